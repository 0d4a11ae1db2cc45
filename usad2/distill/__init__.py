"""usad2.distill."""
