# written by dsmoe; redraw with: gnuplot shared_removed.gp (in this directory)
reset
if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {
  set terminal pngcairo size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
} else {
  set terminal png size 1000,600 noenhanced font 'DejaVu Sans,12' linewidth 1.2
}
set output 'shared_removed.png'
set encoding utf8
set datafile missing 'NaN'
set border lw 1 lc rgb '#404040'
set grid xtics ytics back lt 1 lc rgb '#d9d9d9' lw 1
set tics nomirror out
set key box lc rgb '#bbbbbb' opaque samplen 2.5 spacing 1.2
set title "removing the shared experts (one more routed expert each)"
set xlabel ""
set ylabel "loss (nats/token)"
set xtics ("trained" 0, "shared removed" 1)
set xrange [-0.5:1.5]
set key outside right top
plot 'shared_removed.dat' index 0 using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc 1 title "m4"
