"""Class -> domain mapping files: every class of a tagger's output belongs to one domain.

Format (tab-separated, `#` starts a comment line): `index<TAB>mid<TAB>domain<TAB>display name`,
one line per class, indices 0..C-1 in order, domain one of speech, audio, music. The shipped
`taggers/yamnet.tsv` follows the AudioSet ontology (the Speech subtree is speech, the Music
subtree music, the rest audio). A mapping is checked against the class map that ships with the
model (`index,mid,display_name` CSV) when the tagger names one, so a mapping written for another
release of the model is refused instead of silently mislabelling classes.
"""
import csv
import dataclasses

import numpy as np

from usad2.errors import ConfigError

DOMAINS = ("speech", "audio", "music")  # the column order of utt2domain_post


@dataclasses.dataclass(frozen=True)
class ClassMapping:
    """Class ids (`mids`) and each class's domain, index-aligned with the tagger's outputs."""

    mids: tuple
    domains: tuple
    names: tuple
    where: str = "<in memory>"

    def matrix(self):
        """(C, 3) float32 0/1 matrix: row c has a 1 in the column of class c's domain."""
        out = np.zeros((len(self.domains), len(DOMAINS)), dtype=np.float32)
        out[np.arange(len(self.domains)), [DOMAINS.index(d) for d in self.domains]] = 1.0
        return out

    def check_class_map(self, path):
        """Refuse a mapping whose (index, mid) pairs differ from the model's class map CSV."""
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        mids = tuple(r["mid"] for r in rows)
        if [int(r["index"]) for r in rows] != list(range(len(rows))):
            raise ConfigError(f"class map {path}: indices are not 0..{len(rows) - 1} in order")
        if mids != self.mids:
            first = next((i for i, (a, b) in enumerate(zip(mids, self.mids)) if a != b),
                         min(len(mids), len(self.mids)))
            raise ConfigError(f"mapping {self.where} does not fit class map {path}: {len(self.mids)} "
                              f"vs {len(mids)} classes, first difference at index {first}")


def read_mapping(path):
    """Read and check a mapping file; errors name the file and line."""
    mids, domains, names = [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            where = f"{path}:{number}"
            if len(fields) != 4:
                raise ConfigError(f"{where}: expected 4 tab-separated fields (index, mid, domain, name), "
                                  f"got {len(fields)}")
            index, mid, domain, name = fields
            if index != str(len(mids)):
                raise ConfigError(f"{where}: class index {index!r}, expected {len(mids)} (in order from 0)")
            if domain not in DOMAINS:
                raise ConfigError(f"{where}: domain {domain!r} is not one of {', '.join(DOMAINS)}")
            if mid in mids:
                raise ConfigError(f"{where}: class {mid} listed twice")
            mids.append(mid)
            domains.append(domain)
            names.append(name)
    if not mids:
        raise ConfigError(f"mapping {path}: no classes")
    return ClassMapping(tuple(mids), tuple(domains), tuple(names), str(path))
