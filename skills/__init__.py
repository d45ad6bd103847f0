"""Skills: what a skill is (its spec), its dialogue data, its knowledge, and where installed skills live.

This package never imports ``bot`` or ``manager``; the bot loads skills through it.
"""
from __future__ import annotations

import os
from pathlib import Path

from .data import Example, ReadResult, split_examples, write_jsonl
from .readers import read_source
from .knowledge import Passage, Retriever
from .registry import SkillRegistry, UnknownSkillError
from .spec import AdapterTraining, DecodingSpec, KnowledgeSpec, SkillSpec, SpecError, validate_skill_name

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
SKILLS_DIR_ENV = "ADAPTERBOT_SKILLS_DIR"


def default_skills_dir() -> Path:
    """Where skills are installed unless a command names ``--skills-dir``: ``$ADAPTERBOT_SKILLS_DIR`` or the bundled skills."""
    env = os.environ.get(SKILLS_DIR_ENV)
    return Path(env) if env else BUNDLED_DIR


__all__ = [
    "BUNDLED_DIR",
    "SKILLS_DIR_ENV",
    "AdapterTraining",
    "DecodingSpec",
    "Example",
    "KnowledgeSpec",
    "Passage",
    "ReadResult",
    "Retriever",
    "SkillRegistry",
    "SkillSpec",
    "SpecError",
    "UnknownSkillError",
    "default_skills_dir",
    "read_source",
    "split_examples",
    "validate_skill_name",
    "write_jsonl",
]
