"""usad2.targets."""
