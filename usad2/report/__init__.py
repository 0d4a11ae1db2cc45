"""usad2.report: the stage-9 report (RESULTS.md tables and PNG plots) from probe results and training logs."""
