"""Run reports to keep: one self-contained HTML file per run (or per pair of runs), and the plots."""
