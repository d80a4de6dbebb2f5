# written by dsmoe; redraw with: gnuplot domains_gshard.gp (in this directory)
reset
if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) {
  set terminal pngcairo size 1100,500 noenhanced font 'DejaVu Sans,12' linewidth 1.2
} else {
  set terminal png size 1100,500 noenhanced font 'DejaVu Sans,12' linewidth 1.2
}
set output 'domains_gshard.png'
set encoding utf8
set datafile missing 'NaN'
set border lw 1 lc rgb '#404040'
set grid xtics ytics back lt 1 lc rgb '#d9d9d9' lw 1
set tics nomirror out
set key box lc rgb '#bbbbbb' opaque samplen 2.5 spacing 1.2
set title "gshard: share of each domain's routed selections per expert (last MoE layer)"
set xlabel "routed expert"
set ylabel ""
set xrange [-0.5:15.5]
set yrange [14.5:-0.5]
set ytics ("adventure" 0, "belles_lettres" 1, "editorial" 2, "fiction" 3, "government" 4, "hobbies" 5, "humor" 6, "learned" 7, "lore" 8, "mystery" 9, "news" 10, "religion" 11, "reviews" 12, "romance" 13, "science_fiction" 14)
set grid noxtics noytics
unset key
set cbrange [0:0.127000633]
set cblabel "share of the domain's selections"
set palette defined (0 '#f7f7f7', 0.5 '#6baed6', 1 '#08306b')
set style fill solid 1.0 noborder
plot 'domains_gshard.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fc palette notitle
