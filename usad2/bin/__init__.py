"""usad2.bin."""
