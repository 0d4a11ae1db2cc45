"""usad2.s3prl_upstream."""
