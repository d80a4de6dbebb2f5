# written by dsmoe; redraw with: gnuplot val_loss.gp (in this directory)
reset
if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {
  set terminal pngcairo size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
} else {
  set terminal png size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
}
set output 'val_loss.png'
set encoding utf8
set datafile missing 'NaN'
set border lw 1 lc rgb '#404040'
set grid xtics ytics back lt 1 lc rgb '#d9d9d9' lw 1
set tics nomirror out
set key box lc rgb '#bbbbbb' opaque samplen 2.5 spacing 1.2
set title "validation loss, mean of 2 seeds (bars: seed range)"
set xlabel "training tokens (millions)"
set ylabel "validation loss (nats/token)"
set key outside right top
plot 'val_loss.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 1 title "gshard", \
     'val_loss.dat' index 0 using 1:2:3 with yerrorbars lc 1 pt 7 ps 0.5 notitle, \
     'val_loss.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 2 title "shared", \
     'val_loss.dat' index 1 using 1:2:3 with yerrorbars lc 2 pt 7 ps 0.5 notitle, \
     'val_loss.dat' index 2 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 3 title "m2", \
     'val_loss.dat' index 2 using 1:2:3 with yerrorbars lc 3 pt 7 ps 0.5 notitle, \
     'val_loss.dat' index 3 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 4 title "m4", \
     'val_loss.dat' index 3 using 1:2:3 with yerrorbars lc 4 pt 7 ps 0.5 notitle, \
     'val_loss.dat' index 4 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 5 title "dense", \
     'val_loss.dat' index 4 using 1:2:3 with yerrorbars lc 5 pt 7 ps 0.5 notitle
