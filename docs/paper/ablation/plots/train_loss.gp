# written by dsmoe; redraw with: gnuplot train_loss.gp (in this directory)
reset
if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {
  set terminal pngcairo size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
} else {
  set terminal png size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
}
set output 'train_loss.png'
set encoding utf8
set datafile missing 'NaN'
set border lw 1 lc rgb '#404040'
set grid xtics ytics back lt 1 lc rgb '#d9d9d9' lw 1
set tics nomirror out
set key box lc rgb '#bbbbbb' opaque samplen 2.5 spacing 1.2
set title "training loss (moving average), mean of 2 seeds"
set xlabel "training tokens (millions)"
set ylabel "training loss (nats/token)"
set key outside right top
plot 'train_loss.dat' index 0 using 1:2 with lines lw 2 lc 1 title "gshard", \
     'train_loss.dat' index 1 using 1:2 with lines lw 2 lc 2 title "shared", \
     'train_loss.dat' index 2 using 1:2 with lines lw 2 lc 3 title "m2", \
     'train_loss.dat' index 3 using 1:2 with lines lw 2 lc 4 title "m4", \
     'train_loss.dat' index 4 using 1:2 with lines lw 2 lc 5 title "dense"
