"""usad2.data: Kaldi-style data dirs and the data preparation around them.

Data dirs (wav.scp, segments, utt2spk/spk2utt, utt2dur, utt2num_samples, utt2domain, utt2domain_post,
utt2domain_mix, utt2weight, reco2dur, text, utt2<label>):
- `usad2.data.datadir`: `DataDir`, `load_data_dir` (read + validate), `DataDir.write` (atomic),
  `subset`, `with_prefix`, `source(utt)` -> `AudioSource` (path, start, end, is_pipe)
- `usad2.data.combine`: `combine_datadirs` / `combine_data` (id collisions refused, prefixes)
- `usad2.data.validate`: `validate_data_dir` (audio checks too) and its summary
- `usad2.data.fix`: `fix_data_dir` (Kaldi fix_data_dir.sh behaviour)
- `usad2.data.kinds`: the file kinds, `DOMAINS`, `Segment`; `usad2.data.kaldi_text`: line reader
- `usad2.data.consistency`: cross-file checks and `audio_duration(path)`
"""
