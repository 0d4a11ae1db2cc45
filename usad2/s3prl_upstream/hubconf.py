"""s3prl hub entries `usad2` and `usad2_local` (attached to `s3prl.hub` by `hook.py`).

s3prl convention: an entry takes `ckpt` (here always a local usad2 export, `-k` of
`run_downstream`), `model_config` (`-g`, optional YAML choosing the returned layers, see
`expert.load_options`) and `refresh` (`-r`: re-download a cached checkpoint). usad2 never
downloads anything at run time, so `refresh` is accepted and ignored; `usad2` and `usad2_local`
are the same entry (the `_local` name is what s3prl users expect for a local-path upstream).
"""


def usad2_local(ckpt=None, model_config=None, refresh=False, **kwds):
    """A usad2 student export as an s3prl UpstreamExpert (`ckpt`: export file or directory)."""
    from usad2.s3prl_upstream.expert import UpstreamExpert

    del refresh  # never downloads: nothing to refresh
    return UpstreamExpert(ckpt=ckpt, model_config=model_config, **kwds)


def usad2(ckpt=None, model_config=None, refresh=False, **kwds):
    """Same as `usad2_local`: `-u usad2 -k <export>` (usad2 has no download URL)."""
    return usad2_local(ckpt=ckpt, model_config=model_config, refresh=refresh, **kwds)
