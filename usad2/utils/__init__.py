"""usad2.utils."""
