"""The ``adapterbot`` command: chat, manage skills, train the manager, evaluate, benchmark."""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import signal
import sys
from pathlib import Path

from skills.spec import AdapterTraining

# `skill add` flags for the adapter's training settings: dest -> (flag, type, help)
TRAINING_FLAGS = {
    "kind": ("--kind", str, "adapter kind: bottleneck, houlsby, lora, prefix or prompt (`adapterbot skill kinds` lists each "
                            "kind's settings, given as --SETTING VALUE, e.g. --kind lora --rank 8 --alpha 16)"),
    "epochs": ("--epochs", int, "most passes over the training split"),
    "learning_rate": ("--learning-rate", float, "AdamW learning rate of the adapter"),
    "batch_size": ("--batch-size", int, "examples per optimisation step"),
    "patience": ("--patience", int, "stop after this many epochs without a better validation perplexity"),
}


def _common(p: argparse.ArgumentParser) -> None:
    """The options every command takes (docs/DESIGN.md): backbone, skills folder, device."""
    p.add_argument("--backbone", default=None, metavar="ID|PATH",
                   help="hub id (e.g. microsoft/DialoGPT-small; downloaded only then) or local folder; default: the bundled offline backbone")
    p.add_argument("--skills-dir", type=Path, default=None, metavar="DIR",
                   help="folder of installed skills (default: $ADAPTERBOT_SKILLS_DIR, else the bundled skills)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true", help="let transformers run a hub model's own code (off by default)")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _load_bot(args):
    import torch

    from . import AdapterBot

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return AdapterBot.from_pretrained(args.backbone, args.skills_dir, device=device, trust_remote_code=args.trust_remote_code)


def _registry(args):
    from skills import SkillRegistry, default_skills_dir

    return SkillRegistry(args.skills_dir or default_skills_dir())


def cmd_chat(args) -> int:
    from ui.app import launch

    if not _port_is_free(args.host, args.port):
        raise RuntimeError(f"port {args.port} on {args.host} is in use (another `adapterbot chat`?); pick a free one with --port")
    api_key = args.api_key or os.environ.get("ADAPTERBOT_API_KEY") or None  # the environment keeps it out of `ps`
    launch(_load_bot(args), host=args.host, port=args.port, share=args.share, max_upload_mb=args.max_upload_mb,
           api_key=api_key)
    return 0


def cmd_skill_list(args) -> int:
    registry = _registry(args)
    if not registry.root.is_dir():
        raise FileNotFoundError(f"{registry.root}: no such skills folder (check --skills-dir or $ADAPTERBOT_SKILLS_DIR)")
    names = registry.names()
    print(f"{len(names)} skill(s) in {registry.root}")
    broken = 0
    for name in names:
        try:
            info = registry.describe(name)
        except (OSError, ValueError) as e:  # one broken skill.yaml: the others are still listed, as the bot loads them
            print(f"- {name}: cannot be read, so the bot skips it: {e}")
            broken += 1
            continue
        card = info.get("card") or {}
        figures = ""
        if "test_ppl" in card:
            figures = f"  test ppl {card['test_ppl']:.1f} (bare backbone {card['test_ppl_backbone']:.1f})"
        splits = info.get("splits") or {}
        size = f", {card['trainable_params']:,} parameters" if "trainable_params" in card else ""
        print(f"- {name}: {info.get('description', '')}\n    {info['kind']} adapter{size}; {info['path']}  splits {splits}{figures}")
    return 1 if broken else 0


def cmd_skill_kinds(args) -> int:
    from .adapter.kinds import KINDS

    for name, kind in KINDS.items():
        print(f"{name}: attaches {kind.attaches}" + ("" if kind.identity_at_init else " (not the identity when fresh)"))
        for setting, (default, doc) in setting_docs(kind.Settings).items():
            print(f"    --{setting.replace('_', '-')} (default {default}): {doc}")
    return 0


def setting_docs(settings_class) -> dict[str, tuple[object, str]]:
    """Each field of a settings dataclass: its default and its docstring line (from ``Attributes:``)."""
    import dataclasses
    import inspect
    import re

    doc = inspect.getdoc(settings_class) or ""
    found = {}
    for f in dataclasses.fields(settings_class):
        match = re.search(rf"^\s*{f.name}: (.+?)(?=^\s*\w+: |\Z)", doc, re.M | re.S)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        found[f.name] = (default, " ".join(match.group(1).replace("``", "").split()) if match else "")
    return found


def kind_flags(extra: list[str]) -> dict[str, object]:
    """``--rank 8 --targets attn.c_attn mlp.c_fc`` -> ``{"rank": 8, "targets": ["attn.c_attn", "mlp.c_fc"]}``.

    Values read as YAML scalars (``8`` an int, ``16.0`` a float); a flag followed by several values
    gives a list. The kind's settings class then checks names and values.
    """
    import yaml

    settings: dict[str, object] = {}
    name = None
    for token in extra:
        if token.startswith("--"):
            name = token[2:].replace("-", "_")
            if not name or name in settings:
                raise ValueError(f"{token}: {'empty' if not name else 'repeated'} adapter setting flag")
            settings[name] = []
        elif name is None:
            raise ValueError(f"unexpected argument {token!r}")
        else:
            settings[name].append(yaml.safe_load(token) if not token.startswith(("[", "{")) else token)
    for key, values in settings.items():
        if not values:
            raise ValueError(f"--{key.replace('_', '-')} needs a value")
        settings[key] = values[0] if len(values) == 1 else values
    if isinstance(settings.get("targets"), str):  # one target is still a list of targets
        settings["targets"] = [settings["targets"]]
    return settings


def cmd_skill_add(args) -> int:
    from .skill_builder import add_skill, routed_line

    columns = None
    if args.columns:
        try:
            columns = json.loads(args.columns)
        except json.JSONDecodeError as e:
            raise ValueError(f"--columns: not valid JSON ({e})") from None
        if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
            raise ValueError('--columns must be a JSON object of column names, e.g. {"context": "prompt", "response": "reply"}')
    from .adapter.config import kind_settings

    if args.query_turns != 1 and args.knowledge is None and not args.faq:
        raise ValueError("--query-turns: only used with --knowledge or --faq (it sets how many turns search the knowledge file)")
    if args.query_turns < 1:
        raise ValueError(f"--query-turns: must be at least 1, got {args.query_turns}")
    given = {k: getattr(args, k) for k in TRAINING_FLAGS if getattr(args, k) is not None}
    training = AdapterTraining(**given, settings=kind_flags(args.extra))  # checked before the model loads
    kind_settings(training.kind, training.settings)
    _registry(args).check_installable(args.name, args.replace)  # a bad or taken name: refused before the model loads
    bot = _load_bot(args)
    r = add_skill(bot, args.name, args.data, description=args.description or "", knowledge=args.knowledge,
                  replace=args.replace, columns=columns, max_examples=args.limit, training=training,
                  query_turns=args.query_turns, faq=args.faq)
    print(f"installed skill {r.name!r} in {r.path}")
    if r.skipped:  # each skipped row was named in the warning as the file was read
        print(f"  skipped {r.skipped} bad row(s) of {args.data}, named in the warning above")
    print(f"  examples {r.examples}: {r.splits}; adapter = {100 * r.trainable_fraction:.2f}% of the backbone; trained in {r.train_seconds:.0f}s")
    print(f"  test perplexity: {r.test_ppl:.2f} with its adapter, {r.test_ppl_backbone:.2f} bare backbone "
          f"({r.test_ppl / r.test_ppl_backbone:.2f}x)")
    if r.copy_boost is not None:
        print(f"  copy_boost {r.copy_boost:g}, chosen on validation F1 ("
              + ", ".join(f"{b:g}: {f:.3f}" for b, f in r.copy_boost_f1.items()) + ")")
    if r.routing:
        print(f"  dialogue manager updated: {routed_line(r.name, r.routing)}")
    else:
        print("  no dialogue manager yet: run `adapterbot manager train`")
    for warning in r.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_skill_remove(args) -> int:
    from .skill_builder import remove_skill

    remove_skill(_registry(args), args.name)
    print(f"removed skill {args.name!r}")
    return 0


def cmd_skill_export(args) -> int:
    import torch

    from .adapter import AdaptedModel
    from .adapter.peft_format import export_peft
    from .backbone import load_backbone

    registry = _registry(args)
    spec = registry.spec(args.name)  # an unknown skill raises, listing the installed ones
    if spec.adapter.kind != "lora":
        raise ValueError(f"skill {args.name!r} is a {spec.adapter.kind!r} adapter; only a lora skill has a PEFT format")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    backbone, _, name = load_backbone(args.backbone, device=device, trust_remote_code=args.trust_remote_code)
    model = AdaptedModel(backbone, name)
    model.load_adapter(args.name, registry.path(args.name), kind="lora")  # another backbone's skill is refused here
    base = args.base_model or (args.backbone or name)
    export_peft(model, args.name, args.peft, base_model_name_or_path=str(base))
    print(f"exported skill {args.name!r} to {args.peft} in PEFT's format (base_model_name_or_path {str(base)!r}); "
          f"load it with peft.PeftModel.from_pretrained(backbone, {str(args.peft)!r})")
    return 0


def cmd_skill_import(args) -> int:
    from .skill_builder import import_peft_skill, routed_line, routing_warning

    bot = _load_bot(args)
    r = import_peft_skill(bot, args.name, args.peft, data=args.data, description=args.description or "",
                          replace=args.replace)
    print(f"installed skill {r.name!r} in {r.path} from the PEFT LoRA in {args.peft} (no training)")
    print(f"  lora rank {r.rank}, alpha {r.alpha:g}, targets {', '.join(r.targets)}; "
          f"adapter = {100 * r.trainable_fraction:.2f}% of the backbone")
    if r.test_ppl is not None:
        print(f"  examples {r.examples}: {r.splits}; test perplexity {r.test_ppl:.2f} with its adapter, "
              f"{r.test_ppl_backbone:.2f} bare backbone ({r.test_ppl / r.test_ppl_backbone:.2f}x)")
    if r.manager_updated:
        print(f"  dialogue manager updated: {routed_line(r.name, r.routing)}")
        if warning := routing_warning(r.name, r.routing):
            print(f"warning: {warning}")
    elif args.data is None:
        print("  the dialogue manager cannot route to it: it has no data. Pick it by name, or import it again with "
              "--replace --data FILE (examples of what it does) to teach the manager")
    else:
        print("  no dialogue manager yet: run `adapterbot manager train`")
    return 0


def cmd_manager_train(args) -> int:
    from .manager_training import train_manager

    bot = _load_bot(args)
    report = train_manager(bot, threshold=args.threshold, blocks=args.blocks)
    how = "given" if args.threshold is not None else "chosen on validation turns"
    if len(report["sweep"]) > 1:
        print("validation balanced recall: " + ", ".join(f"{k}: {v:.3f}" for k, v in report["sweep"].items()))
    print(f"dialogue manager trained on {', '.join(report['labels'])}: held-out accuracy {100 * report['accuracy']:.1f}%, "
          f"threshold {bot.manager.config.threshold:g} ({how}), features {bot.manager.config.feature_name}")
    return 0


def cmd_eval(args) -> int:
    from .evaluation.runner import run_eval

    paths = run_eval(args)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_compare(args) -> int:
    from .evaluation.compare import run

    paths = run(args)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    paths = run_bench(args)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adapterbot", description="Adapter-Bot: a multi-skill chatbot on one frozen backbone.")
    sub = p.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="start the web chat (Gradio)")
    _common(chat)
    chat.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    chat.add_argument("--port", type=int, default=7860, help="port to serve on (default: %(default)s)")
    chat.add_argument("--share", action="store_true", help="open a public Gradio share link (off by default)")
    chat.add_argument("--api-key", default=None, metavar="KEY",
                      help="require 'Authorization: Bearer KEY' on the OpenAI-compatible API (/v1); "
                           "default: $ADAPTERBOT_API_KEY, else no key")
    chat.add_argument("--max-upload-mb", type=float, default=50, help="largest skill data file accepted from the page, in MB (default: %(default)s)")
    chat.set_defaults(func=cmd_chat)

    skill = sub.add_parser("skill", help="list, add, remove, export or import skills").add_subparsers(dest="skill_command", required=True)
    s = skill.add_parser("list", help="installed skills with their folders and test figures")
    _common(s)
    s.set_defaults(func=cmd_skill_list)
    s = skill.add_parser("add", help="train a new skill's adapter from dialogue data and install it")
    _common(s)
    s.add_argument("name", help="skill name: lowercase letters, digits, '_' or '-'")
    s.add_argument("--data", required=True, metavar="FILE|hf:NAME", help="JSONL/CSV of {context, response, knowledge?}, or a hub dataset")
    s.add_argument("--description", help="one line shown in the UI and in `skill list`")
    s.add_argument("--knowledge", type=Path, metavar="FILE", help="passages to retrieve from (one per line, or JSONL)")
    s.add_argument("--faq", action="store_true",
                   help="make every exchange of --data a passage the skill retrieves and copies its answer from, as the "
                        "bundled tech support does: with a small backbone, a question-and-answer skill's replies read "
                        "far better this way (not with --knowledge)")
    s.add_argument("--query-turns", type=int, default=1, metavar="N",
                   help="how many of the conversation's newest turns search --knowledge (default: %(default)s, the message "
                        "alone; 3 lets a follow-up such as 'I tried that already' find its problem)")
    s.add_argument("--columns", metavar="JSON", help='the data\'s column names, where they are not context/response/knowledge, e.g. {"context": "prompt", "response": "utterance"}')
    s.add_argument("--replace", action="store_true",
                   help="retrain and replace a skill of the same name (its description and knowledge come from this command)")
    s.add_argument("--limit", type=int, help="use at most this many examples")
    defaults = AdapterTraining()
    for dest, (flag, kind, what) in TRAINING_FLAGS.items():
        s.add_argument(flag, dest=dest, type=kind, default=None, help=f"{what} (default: {getattr(defaults, dest)})")
    s.set_defaults(func=cmd_skill_add, takes_extra=True)
    s = skill.add_parser("kinds", help="the adapter kinds, where each attaches, and their settings")
    s.set_defaults(func=cmd_skill_kinds)
    s = skill.add_parser("remove", help="uninstall a skill (other skills are untouched)")
    _common(s)
    s.add_argument("name", help="the installed skill to remove (see `adapterbot skill list`)")
    s.set_defaults(func=cmd_skill_remove)
    s = skill.add_parser("export", help="write a lora skill in PEFT's format (peft.PeftModel.from_pretrained loads it)")
    _common(s)
    s.add_argument("name", help="the installed lora skill to export")
    s.add_argument("--peft", type=Path, required=True, metavar="DIR", help="folder to write adapter_config.json and adapter_model.safetensors into")
    s.add_argument("--base-model", metavar="ID|PATH", help="base_model_name_or_path to record (default: --backbone, else the backbone's name)")
    s.set_defaults(func=cmd_skill_export)
    s = skill.add_parser("import", help="install a PEFT LoRA made for this backbone as a lora skill (no training)")
    _common(s)
    s.add_argument("name", help="skill name: lowercase letters, digits, '_' or '-'")
    s.add_argument("--peft", type=Path, required=True, metavar="DIR", help="a PEFT LoRA folder (adapter_config.json, adapter_model.safetensors)")
    s.add_argument("--data", metavar="FILE|hf:NAME", help="examples of what the skill does, so the dialogue manager can route to it "
                                                         "(without them it can only be chosen by name)")
    s.add_argument("--description", help="one line shown in the UI and in `skill list`")
    s.add_argument("--replace", action="store_true", help="replace an installed skill of the same name")
    s.set_defaults(func=cmd_skill_import)

    mgr = sub.add_parser("manager", help="the dialogue manager").add_subparsers(dest="manager_command", required=True)
    m = mgr.add_parser("train", help="train the router on the installed skills plus open chit-chat")
    _common(m)
    m.add_argument("--threshold", type=_probability, default=None,
                   help="route to a skill only when its probability reaches this (default: the best of 0.5-0.9 on validation turns)")
    m.add_argument("--blocks", type=int, nargs="+", default=(), metavar="N",
                   help="candidate numbers of backbone blocks the routing features read; the best on validation "
                        "wins (default: a sixth of the blocks)")
    m.set_defaults(func=cmd_manager_train)

    ev = sub.add_parser("eval", help="offline evaluation: per-skill metrics, routing, baselines")
    _common(ev)
    ev.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and plots")
    ev.add_argument("--skills", nargs="+", help="evaluate only these skills")
    ev.add_argument("--predictions", type=Path, help="score another system's JSONL {context, prediction, reference, skill?}")
    ev.add_argument("--limit", type=int, help="at most this many test examples per skill (the conversation routing sets of "
                    "\"What a user meets\" are always whole: they mix every class)")
    ev.add_argument("--baseline", choices=["sequential-finetune"], help="also fine-tune the whole backbone skill after skill and report forgetting")
    ev.add_argument("--seed", type=int, default=0, help="torch seed of the run (default: %(default)s)")
    ev.set_defaults(func=cmd_eval)

    # defaults as bot.evaluation.compare's (not imported here: it would pull in torch for --help)
    c = sub.add_parser("compare", help="train every adapter kind on every skill at matched parameter budgets, "
                                       "with full fine-tuning; writes compare.json, compare.md, compare.png")
    _common(c)
    c.add_argument("--out", type=Path, required=True, help="folder for compare.json, compare.md and compare.png")
    c.add_argument("--kinds", nargs="+", default=["bottleneck", "houlsby", "lora", "prefix", "prompt"], help="adapter kinds to compare (default: all)")
    c.add_argument("--skills", nargs="+", help="skills to train on (default: every installed skill)")
    c.add_argument("--budgets", nargs="+", type=float, default=[1.0, 3.0], metavar="PERCENT",
                   help="trainable-parameter budgets, in %% of the backbone (default: 1 3)")
    c.add_argument("--epochs", type=int, default=1, help="training epochs per adapter (default: %(default)s; the recipe's are 4-15)")
    c.add_argument("--limit", type=int, default=96, help="training examples per skill, sampled once (default: %(default)s)")
    c.add_argument("--seeds", type=int, default=2, help="seeds per adapter, 0..N-1 (default: %(default)s)")
    c.add_argument("--no-full-finetune", action="store_true", help="skip the full fine-tuning reference")
    c.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s: OpenMP threads thrash on a shared "
                                                       "2-core CPU; raise it on an idle machine)")
    c.set_defaults(func=cmd_compare)

    b = sub.add_parser("bench", help="speed and memory benchmarks; writes bench.json and bench.md")
    _common(b)
    b.add_argument("--out", type=Path, required=True, help="folder for bench.json and bench.md")
    b.add_argument("--repeats", type=int, default=5, help="timed runs of each variant; medians are reported (default: %(default)s)")
    b.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (a smoke test)")
    b.set_defaults(func=cmd_bench)
    return p


def _interrupt(signum: int, frame) -> None:
    """SIGTERM as Ctrl-C: a `skill add` stopped after installing its skill but before the manager learned it had left
    the skill installed and unreachable in Auto mode (a new user's `timeout 60 adapterbot skill add ...`)."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout`, `kill`: clean up as on Ctrl-C
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; nothing was installed half-way", file=sys.stderr)
        return 130
    except (ValueError, FileExistsError, FileNotFoundError, LookupError, RuntimeError) as e:
        print(f"adapterbot: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
