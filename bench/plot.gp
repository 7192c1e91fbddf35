# Grouped bars of bench/compare.sh's median req/s per contender, one bar per connection count.
# Usage: gnuplot -e "datafile='F'; outfile='O.png'; charttitle='T'" bench/plot.gp
# datafile rows: contender req/s_at_64_connections req/s_at_256_connections
set terminal pngcairo size 1200,640 noenhanced font "sans,10"
set output outfile
set title charttitle
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.95 relative
set ylabel "requests/s (median over rounds)"
set yrange [0:*]
set format y "%.0f"
set grid ytics
set key top right
set xtics nomirror
set ytics nomirror
# With 2 series and gap 1 each bar is 1/3 wide: their centres sit 1/6 left and right of the tic.
plot datafile using 2:xtic(1) title "64 connections" lc rgb "#4e79a7", \
     '' using 3 title "256 connections" lc rgb "#f28e2b", \
     '' using ($0 - 1.0/6):2:(sprintf("%.0f", $2)) with labels offset 0,0.7 font ",8" notitle, \
     '' using ($0 + 1.0/6):3:(sprintf("%.0f", $3)) with labels offset 0,0.7 font ",8" notitle
