"""usad2.teachers."""
