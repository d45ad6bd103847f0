"""The "What a user meets" section of ``report.md``, its targets, and the reliability diagram.

It reads the report keys written by :mod:`bot.evaluation.conversation_routing`
(``conversations``), :mod:`bot.evaluation.knowledge_check` (``knowledge``) and
:mod:`bot.evaluation.reply_proxies` (``proxies``).
"""
from __future__ import annotations

from pathlib import Path

from .report_markdown import esc as _esc, fmt as _fmt, table as _table
from .report_plots import _new_figure, _save_figure

SET_TITLES = {
    "first_turn": "single turns (skills' test contexts as they stand; chit-chat of any length)",
    "skill_after_chitchat": "skill turns after 1-5 chit-chat turns",
    "chitchat_after_skill": "chit-chat turns after a skill exchange (to `none`)",
    "out_of_set": "out-of-set chit-chat: chatterbot categories no training saw (to `none`)",
    "skill_after_skill": "a skill's turn after another skill's exchange (the user changes the subject)",
    "skill_with_aside": "a skill's turn with a personal aside (\"... my buddy and i have money on it\")",
    "follow_up": "a skill's follow-up turns (\"i tried that already\") stay on the skill",
}
SET_TARGETS = {"first_turn": 0.95, "skill_after_chitchat": 0.90, "chitchat_after_skill": 0.90, "out_of_set": 0.90,
               "skill_after_skill": 0.90, "skill_with_aside": 0.90, "follow_up": 0.90}
ECE_TARGET = 0.05
KNOWLEDGE_TARGETS = {"f1": 0.5, "abstention": 0.9, "false_abstention": 0.1}
PROXY_TARGET = 0.8
PPL_RATIO_TARGET = 0.6


def _holds(ok: bool) -> str:
    return "yes" if ok else "**no**"


def targets(report: dict) -> list[tuple[str, float | None, str, bool]]:
    """``(figure, value, target, holds)`` for every user-facing target the report can judge."""
    rows = []
    conv = report.get("conversations")
    if conv:
        for name, target in SET_TARGETS.items():
            if name not in conv["sets"]:  # a report written before the set existed
                continue
            value = conv["sets"][name]["accuracy"]
            rows.append((f"routing: {SET_TITLES[name]}", value, f">= {target}", value >= target))
        ece = conv["calibration"]["ece"]
        rows.append(("expected calibration error (10 bins), union of the four", ece, f"<= {ECE_TARGET}", ece <= ECE_TARGET))
    for name, k in (report.get("knowledge") or {}).items():
        rows.append((f"{name}: F1, facts in the file", k["in_file"]["f1"], f">= {KNOWLEDGE_TARGETS['f1']}",
                     k["in_file"]["f1"] >= KNOWLEDGE_TARGETS["f1"]))
        rows.append((f"{name}: abstains, answer not in the file", k["out_of_file"]["abstention"],
                     f">= {KNOWLEDGE_TARGETS['abstention']}", k["out_of_file"]["abstention"] >= KNOWLEDGE_TARGETS["abstention"]))
        rows.append((f"{name}: says \"I don't know\" to facts in the file", k["in_file"]["false_abstention"],
                     f"<= {KNOWLEDGE_TARGETS['false_abstention']}",
                     k["in_file"]["false_abstention"] <= KNOWLEDGE_TARGETS["false_abstention"]))
    for name, p in (report.get("proxies") or {}).items():
        m = report["skills"][name]
        ratio = m["ppl"] / m["ppl_backbone"] if m.get("ppl") and m.get("ppl_backbone") else None
        big = m["n"] >= 30
        rows.append((f"{name}: test ppl / bare backbone's (n={m['n']})", ratio, f"<= {PPL_RATIO_TARGET}, n >= 30",
                     ratio is not None and ratio <= PPL_RATIO_TARGET and big))
        rows.append((f"{name}: good-reply proxy, auto routing", p["rate"]["auto"], f">= {PROXY_TARGET}",
                     p["rate"]["auto"] >= PROXY_TARGET))
    return rows


def user_markdown(report: dict, reliability: Path | None) -> list[str]:
    """Markdown lines of the section (empty when the report has none of its keys)."""
    conv, knowledge, proxies = report.get("conversations"), report.get("knowledge"), report.get("proxies")
    chitchat = report.get("chitchat")
    if not (conv or knowledge or proxies or chitchat):
        return []
    out = ["## What a user meets", "",
           "Held-out sets built from splits no training saw (`bot/evaluation/conversation_routing.py`, fixed seed).", ""]
    rows = [[_esc(f), _fmt(v), _esc(t), _holds(ok)] for f, v, t, ok in targets(report)]
    out += [_table(["figure", "value", "target", "holds"], rows, "lrlc"), ""]
    if conv:
        out += [f"Routing threshold {_fmt(conv['threshold'], 2)}, temperature {_fmt(conv['temperature'], 2)}. "
                "Where each set's turns went:", ""]
        rows = [[_esc(name), _fmt(s["n"]), _fmt(s["accuracy"]),
                 ", ".join(f"{_esc(k)} {v}" for k, v in sorted(s["routed"].items(), key=lambda kv: -kv[1]))]
                for name, s in conv["sets"].items()]
        out += [_table(["set", "n", "accuracy", "routed to"], rows, "lrrl"), ""]
        if reliability is not None:
            out += [f"![Reliability diagram]({reliability.name})", ""]
    for name, k in (knowledge or {}).items():
        out += [f"### `{_esc(name)}`: knowing what it doesn't know", "",
                f"In the file: {k['in_file']['n']} questions, F1 {_fmt(k['in_file']['f1'])}, passage used "
                f"{_fmt(k['in_file']['passage_used'])}, \"I don't know\" {_fmt(k['in_file']['false_abstention'])}. "
                f"Not in the file: {k['out_of_file']['n']} questions, abstained {_fmt(k['out_of_file']['abstention'])}, "
                f"passage used {_fmt(k['out_of_file']['passage_used'])}.", ""]
        rows = [[_esc(s["question"]), "in" if s["in_file"] else "not in", _esc((s["passage"] or "–")[:80]),
                 "yes" if s["used"] else "no", _esc(s["reply"])] for s in k["samples"]]
        out += [_table(["question", "file", "passage retrieved", "used", "reply"], rows, "lllcl"), ""]
    for name, p in (proxies or {}).items():
        out += [f"### `{_esc(name)}`: sampled replies", "",
                f"Good-reply proxy ({'acknowledges the feeling, never talks as a machine' if name == 'empathetic' else 'names the device or topic, or gives a concrete step'}): "
                + ", ".join(f"{r} {_fmt(v)}" for r, v in p["rate"].items()) + f" over {p['n']} test contexts.", ""]
        rows = [[_esc(" / ".join(s["context"])), _esc(s["auto"]), "yes" if s["auto_ok"] else "no"] for s in p["samples"]]
        out += [_table(["context", "reply (auto)", "proxy"], rows, "llc"), ""]
    if chitchat:
        out += ["### Open chit-chat: the bare backbone's replies", "",
                "First messages of the out-of-set categories (`bot/evaluation/open_chitchat.py`, fixed seed), with the "
                "default decoding (the likeliest of several samples) and the greedy decoding it replaced. Not scored: read them.", ""]
        rows = [[_esc(s["message"]), _esc(s["default"]), _esc(s["greedy"])] for s in chitchat]
        out += [_table(["message", "reply (default)", "reply (greedy, before)"], rows, "lll"), ""]
    return out


def plot_reliability(calibration: dict, path: Path) -> None:
    """Accuracy against confidence per bin, with the bins' counts; the diagonal is perfect calibration."""
    fig = _new_figure(4.8, 4.2)
    ax = fig.add_subplot()
    bins = [b for b in calibration["bins"] if b["count"]]
    width = calibration["bins"][0]["hi"] - calibration["bins"][0]["lo"]
    ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge", edgecolor="black",
           color="#4c72b0", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    for b in bins:
        ax.text(b["lo"] + width / 2, min(b["accuracy"] + 0.02, 0.97), str(b["count"]), ha="center", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence of the route chosen", ylabel="share routed right",
           title=f"Routing reliability (ECE {calibration['ece']:.3f}, n={calibration['n']})")
    ax.legend(loc="upper left", fontsize=8)
    _save_figure(fig, path)
