"""Teacher families: one module per checkpoint family, each registering itself with
`usad2.teachers.base.register_family` when imported (the registry imports them by name, so
heavy dependencies such as transformers, s3prl or fairseq2 load only when a card needs them)."""
