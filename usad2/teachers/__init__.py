"""usad2.teachers: frozen expert encoders described by YAML cards.

`load_card`, `list_cards` and `build_teacher` (usad2.teachers.registry) are the entry points;
families are imported only when a teacher of that family is built.
"""
from usad2.teachers.registry import build_teacher, list_cards, load_card

__all__ = ["build_teacher", "list_cards", "load_card"]
