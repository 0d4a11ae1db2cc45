"""usad2.probe."""
