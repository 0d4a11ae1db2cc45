"""usad2.data."""
