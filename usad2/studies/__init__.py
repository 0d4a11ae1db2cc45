"""usad2.studies: drivers of the research studies behind egs/multidomain/RESULTS.md.

Each module is a command (`python -m usad2.studies.<name> --help`) that chains the stage verbs
for one study; none is part of the recipe's stages, and the core packages never import this one
(test/test_studies_layering.py checks it).

ablate           the paper's ablations as one grid on shared offline targets (docs/method.md#6-evaluation)
freq_resolution  the frequency-resolution study: feature-row widths of the front end and the
                 pitch / harmony probes of fbank, front ends and students
"""
