"""usad2.models."""
