# written by dsmoe; redraw with: gnuplot top_k.gp (in this directory)
reset
if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {
  set terminal pngcairo size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
} else {
  set terminal png size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
}
set output 'top_k.png'
set encoding utf8
set datafile missing 'NaN'
set border lw 1 lc rgb '#404040'
set grid xtics ytics back lt 1 lc rgb '#d9d9d9' lw 1
set tics nomirror out
set key box lc rgb '#bbbbbb' opaque samplen 2.5 spacing 1.2
set title "loss vs routed experts activated per token at inference"
set xlabel "activated routed experts K"
set ylabel "loss (nats/token)"
set key outside right top
plot 'top_k.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 1 title "m4", \
     'top_k.dat' index 1 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 2 title "gshard"
