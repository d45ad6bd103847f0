"""`adapterbot skill add/list/remove` end to end on the tiny backbone."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from bot import AdapterBot
from bot.cli import main
from tests.conftest import write_toy_data


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def skills_dir(tiny_skills_dir, tmp_path):
    import shutil

    root = tmp_path / "skills"
    shutil.copytree(tiny_skills_dir, root)
    return root


def cli(tiny_dir, skills_dir, *args) -> int:
    return main([*args[:2], "--backbone", str(tiny_dir), "--skills-dir", str(skills_dir), *args[2:]])


def test_jsonl_skill_added_through_cli_answers_and_leaves_others_untouched(tiny_dir, skills_dir, tmp_path, capsys):
    before = {name: tree_digest(skills_dir / name) for name in ("alpha", "beta")}
    data = write_toy_data(tmp_path / "gamma.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", "gamma", "--data", str(data), "--description", "toy gamma", "--limit", "20") == 0
    out = capsys.readouterr().out
    assert "installed skill 'gamma'" in out and "test perplexity" in out and "dialogue manager updated" in out
    assert {name: tree_digest(skills_dir / name) for name in ("alpha", "beta")} == before
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == ["alpha", "beta", "gamma"]
    assert "gamma" in bot.manager.skills
    assert bot.respond(["my printer will not print"], skill="gamma").skill == "gamma"

    assert cli(tiny_dir, skills_dir, "skill", "list") == 0
    listing = capsys.readouterr().out
    assert "gamma: toy gamma" in listing and str(skills_dir / "gamma") in listing


def test_existing_name_is_refused_without_replace(tiny_dir, skills_dir, tmp_path, capsys):
    before = tree_digest(skills_dir)
    data = write_toy_data(tmp_path / "a.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", "alpha", "--data", str(data)) == 2
    assert "already installed" in capsys.readouterr().err
    assert tree_digest(skills_dir) == before


@pytest.mark.parametrize("name", ["../evil", "a/b", "Alpha", "auto", ""])
def test_bad_names_are_refused_and_nothing_is_written(tiny_dir, skills_dir, tmp_path, name, capsys):
    before = tree_digest(skills_dir)
    data = write_toy_data(tmp_path / "a.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", name, "--data", str(data)) == 2
    assert "skill name" in capsys.readouterr().err
    assert tree_digest(skills_dir) == before
    assert not (tmp_path / "evil").exists()


def test_remove_drops_the_skill_and_its_manager_class(tiny_dir, skills_dir, capsys):
    beta = tree_digest(skills_dir / "beta")
    assert cli(tiny_dir, skills_dir, "skill", "remove", "alpha") == 0
    assert not (skills_dir / "alpha").exists()
    assert tree_digest(skills_dir / "beta") == beta
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert bot.skills == ["beta"] and bot.manager.classes == ["none", "beta"]


def test_training_flags_reach_the_skill_spec_and_bad_ones_fail_before_loading(tiny_dir, skills_dir, tmp_path, capsys):
    data = write_toy_data(tmp_path / "g.jsonl", "alpha")
    assert cli(tiny_dir, skills_dir, "skill", "add", "gamma", "--data", str(data), "--limit", "20",
               "--epochs", "1", "--bottleneck", "8", "--learning-rate", "0.01") == 0
    adapter = AdapterBot.from_pretrained(tiny_dir, skills_dir).specs["gamma"].adapter
    assert (adapter.epochs, adapter.kind, adapter.settings, adapter.learning_rate) == (1, "bottleneck", {"bottleneck": 8}, 0.01)
    before = tree_digest(skills_dir)
    assert cli(tiny_dir, skills_dir, "skill", "add", "delta", "--data", str(data), "--epochs", "0") == 2
    assert "'epochs' must be an integer >= 1, got 0" in capsys.readouterr().err
    assert tree_digest(skills_dir) == before


def test_skipped_rows_are_reported_once_with_their_line_and_problem(tiny_dir, skills_dir, tmp_path, capsys, caplog):
    data = write_toy_data(tmp_path / "g.jsonl", "alpha")
    lines = data.read_text(encoding="utf-8").splitlines()
    lines.insert(2, '{"context": ["hi"], "response": ')
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="bot.skill_builder"):
        assert cli(tiny_dir, skills_dir, "skill", "add", "gamma", "--data", str(data), "--limit", "20", "--epochs", "1") == 0
    warned = [r.getMessage() for r in caplog.records if "bad row(s) skipped" in r.getMessage()]
    assert len(warned) == 1 and "1 bad row(s) skipped: line 3: invalid JSON" in warned[0]  # as the file is read
    out = capsys.readouterr().out
    assert "skipped 1 bad row(s)" in out and "line 3: invalid JSON" not in out  # the summary counts, not repeats


def test_unknown_skill_and_missing_folder_get_one_line_errors(tiny_dir, skills_dir, tmp_path, capsys):
    assert cli(tiny_dir, skills_dir, "skill", "remove", "nosuch") == 2
    err = capsys.readouterr().err
    assert err.startswith("adapterbot: error: no skill 'nosuch' installed") and "alpha, beta" in err
    assert cli(tiny_dir, tmp_path / "missing", "skill", "list") == 2
    assert "missing: no such skills folder" in capsys.readouterr().err


def test_skill_list_names_a_broken_skill_yaml_and_still_lists_the_others(tiny_dir, skills_dir, capsys):
    (skills_dir / "alpha" / "skill.yaml").write_text("name: [broken\n", encoding="utf-8")
    assert cli(tiny_dir, skills_dir, "skill", "list") == 1
    out = capsys.readouterr().out
    assert "- alpha: cannot be read, so the bot skips it:" in out and "skill.yaml: line 2" in out
    assert "- beta: " in out and "bottleneck adapter" in out


def test_chat_on_a_busy_port_says_which_flag_to_change(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["chat", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and "pick a free one with --port" in err


def test_manager_threshold_must_be_a_probability(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["manager", "train", "--threshold", "1.5"])
    assert exit_info.value.code == 2
    assert "--threshold: must be a probability in [0, 1], got 1.5" in capsys.readouterr().err


def quick_training(**overrides):
    from skills.spec import AdapterTraining

    return AdapterTraining(**{"settings": {"bottleneck": 8}, "epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "max_length": 48, **overrides})


def test_a_module_attribute_name_installs_whole(tiny_dir, skills_dir, tmp_path):
    from bot.skill_builder import add_skill

    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    data = write_toy_data(tmp_path / "half.jsonl", "alpha")
    result = add_skill(bot, "half", data, show_bar=False, training=quick_training())
    assert result.manager_updated and bot.skills == ["alpha", "beta", "half"]
    assert bot.respond(["my printer will not print"], skill="half", max_new_tokens=3).skill == "half"
    reloaded = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    assert reloaded.skipped == {} and reloaded.skills == ["alpha", "beta", "half"]
    assert "half" in reloaded.manager.skills
    ids = torch.tensor([bot.tokenizer.encode("my printer will not print")])
    with torch.no_grad(), bot.model.route("half"):
        trained = bot.model(input_ids=ids).logits
    with torch.no_grad(), reloaded.model.route("half"):
        torch.testing.assert_close(reloaded.model(input_ids=ids).logits, trained, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("problem", ["stray folder", "bad description"])
def test_refusals_come_before_training_and_leave_nothing(tiny_dir, skills_dir, tmp_path, problem):
    from bot.skill_builder import add_skill
    from skills.spec import SpecError

    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    data = write_toy_data(tmp_path / "g.jsonl", "alpha")
    kwargs, error = {}, FileExistsError
    if problem == "stray folder":  # not an installed skill, but install() would refuse to overwrite it
        (skills_dir / "gamma").mkdir()
        (skills_dir / "gamma" / "notes.txt").write_text("mine", encoding="utf-8")
    else:
        kwargs, error = {"description": 42}, SpecError
    before = tree_digest(skills_dir)
    reports = []
    with pytest.raises(error):
        add_skill(bot, "gamma", data, show_bar=False, training=quick_training(), progress=lambda f, m: reports.append(m), **kwargs)
    assert reports == [], "training started before every check had run"
    assert tree_digest(skills_dir) == before and bot.skills == ["alpha", "beta"]
    assert bot.model.skills == ["alpha", "beta"]  # no temporary adapter left loaded


def test_a_failure_after_install_uninstalls_the_new_skill(tiny_dir, skills_dir, tmp_path):
    from bot.skill_builder import add_skill

    foreign = skills_dir / "_manager" / "notes.txt"  # the manager's save refuses a folder holding other files
    foreign.write_text("mine", encoding="utf-8")
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    classes = list(bot.manager.classes)
    before = tree_digest(skills_dir)
    data = write_toy_data(tmp_path / "g.jsonl", "alpha")
    with pytest.raises(ValueError, match="holds files other than a manager's"):
        add_skill(bot, "gamma", data, show_bar=False, training=quick_training(epochs=1))
    assert tree_digest(skills_dir) == before
    assert not (skills_dir / "gamma").exists() and bot.registry.names() == ["alpha", "beta"]
    assert bot.skills == ["alpha", "beta"] and bot.manager.classes == classes


def test_progress_logs_and_bar_name_the_skill_and_count_epochs(tiny_dir, skills_dir, tmp_path, capsys, caplog):
    from bot.skill_builder import add_skill

    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    data = write_toy_data(tmp_path / "g.jsonl", "alpha")
    reports = []
    with caplog.at_level("DEBUG"):
        add_skill(bot, "money", data, show_bar=True, training=quick_training(epochs=2, patience=5),
                  progress=lambda fraction, message: reports.append(message))
    captured = capsys.readouterr()
    terminal = captured.out + captured.err
    assert "_new_" not in "\n".join(reports) + terminal + caplog.text
    assert reports[-1] == "money: epoch 2/2" and "money epoch 1: train loss" in terminal
    assert "training money" in captured.err and "2/2" in captured.err
    assert "epoch/s" in captured.err or "s/epoch" in captured.err
    assert "step/s" not in captured.err and "s/step" not in captured.err


def test_a_skill_that_cannot_be_judged_or_did_not_learn_is_warned_about(tiny_dir, skills_dir, tmp_path, capsys):
    data = tmp_path / "five.jsonl"
    data.write_text("".join(line + "\n" for line in write_toy_data(tmp_path / "all.jsonl", "alpha")
                            .read_text(encoding="utf-8").splitlines()[:5]), encoding="utf-8")
    assert cli(tiny_dir, skills_dir, "skill", "add", "five", "--data", str(data), "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert "warning: the test split has only 1 example(s), fewer than 10" in out and "about 100 examples" in out
    assert "dialogue manager updated: routes " in out and " of 2 held-out test conversations to it (" in out
    assert (skills_dir / "five").is_dir()  # a warning, not a refusal


def test_learning_warnings_give_the_figures_and_what_to_do():
    from bot.skill_builder import learning_warnings
    from skills.spec import AdapterTraining

    assert learning_warnings(12, 20.0, 50.0, 3, AdapterTraining()) == []
    [worse] = learning_warnings(12, 30.8, 27.7, 4, AdapterTraining(epochs=20), has_knowledge=True)
    assert "30.80" in worse and "27.70" in worse and "more examples" in worse and "--epochs" in worse and "4 of at most 20" in worse
    assert len(learning_warnings(12, float("nan"), 27.7, 1, AdapterTraining())) == 1
    assert len(learning_warnings(3, 30.0, 27.7, 1, AdapterTraining(), has_knowledge=True)) == 2
    [poor] = learning_warnings(12, 136.8, 244.0, 10, AdapterTraining())  # learned, but too little to write well
    assert "136.80" in poor and "--faq" in poor
    assert learning_warnings(12, 136.8, 244.0, 10, AdapterTraining(), has_knowledge=True) == []
    [capped] = learning_warnings(12, 15.5, 240.0, 3, AdapterTraining(epochs=3), True, [40.0, 20.0, 16.0])
    assert "cap of 3 epochs" in capped and "20.00 -> 16.00" in capped and "--epochs 6" in capped
    assert learning_warnings(12, 15.5, 240.0, 3, AdapterTraining(epochs=3), True, [40.0, 16.0, 15.99]) == []  # flat
    assert learning_warnings(12, 15.5, 240.0, 2, AdapterTraining(epochs=3), True, [40.0, 16.0]) == []  # stopped early
    [few] = learning_warnings(12, 15.5, 240.0, 2, AdapterTraining(epochs=3), True, [40.0, 16.0], valid_size=1)
    assert "validation split has only 1 example(s)" in few and "more groups" in few


def test_faq_makes_every_exchange_a_passage_the_skill_copies_from(tiny_dir, skills_dir, tmp_path, capsys):
    import json

    from bot.skill_builder import FAQ_DECODING, FAQ_MIN_OVERLAP, FAQ_UNUSED_REPLY, MIN_BOOST_CHOICE
    from skills.knowledge import read_passages
    from skills.spec import SkillSpec

    rows = [{"context": [f"what colour is thing {i}"], "response": f"thing {i} is colour {i % 7}"} for i in range(40)]
    data = tmp_path / "colours.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:3]), encoding="utf-8")  # duplicates once
    assert cli(tiny_dir, skills_dir, "skill", "add", "colours", "--data", str(data), "--faq", "--epochs", "1") == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    assert "--faq" not in out  # no hint to do what was done
    spec = SkillSpec.load(skills_dir / "colours")
    assert spec.knowledge.mode == "retrieval"
    # 4 validation examples are too few to choose a copy boost on: the bundled FAQ's is kept, and said nowhere as chosen
    assert spec.splits["valid"] < MIN_BOOST_CHOICE and "chosen on validation" not in out
    assert spec.decoding.copy_boost == FAQ_DECODING["copy_boost"] and "copy_boost_valid_f1" not in spec.card
    assert spec.decoding.reply_no_repeat_ngram_size == 0  # a whole answer is copied: it may repeat its own 2-grams
    assert read_passages(skills_dir / "colours" / spec.knowledge.file) == [
        f"what colour is thing {i}\nthing {i} is colour {i % 7}" for i in range(40)]
    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    reply = bot.respond(["what colour is thing 12"], skill="colours")
    assert reply.knowledge_used and reply.knowledge.startswith("what colour is thing 12\n")
    # a question the FAQ cannot answer is turned away by its gate, in writing (a pet FAQ gave a parrot its rabbit's diet)
    assert spec.knowledge.min_overlap == FAQ_MIN_OVERLAP and spec.knowledge.unused_reply == FAQ_UNUSED_REPLY
    away = bot.respond(["what colour is the sky over paris"], skill="colours")
    assert not away.knowledge_used and away.text == FAQ_UNUSED_REPLY
    assert cli(tiny_dir, skills_dir, "skill", "add", "more", "--data", str(data), "--faq", "--knowledge", str(data)) == 2
    assert "not both" in capsys.readouterr().err and not (skills_dir / "more").exists()


def test_add_skill_result_carries_the_warnings(tiny_dir, skills_dir, tmp_path):
    from bot.skill_builder import add_skill, held_out_routing
    from skills.readers import read_source

    bot = AdapterBot.from_pretrained(tiny_dir, skills_dir)
    data = tmp_path / "five.jsonl"
    data.write_text("".join(line + "\n" for line in write_toy_data(tmp_path / "all.jsonl", "beta")
                            .read_text(encoding="utf-8").splitlines()[:5]), encoding="utf-8")
    result = add_skill(bot, "five", data, show_bar=False, training=quick_training(epochs=1))
    assert result.splits["test"] == 1
    assert any("only 1 example(s)" in w for w in result.warnings)
    learned = result.test_ppl < result.test_ppl_backbone
    assert any("did not learn" in w for w in result.warnings) == (not learned)
    # the test context as it stands and after a chit-chat opening, routed by the manager that now knows the skill
    assert sum(result.routing.values()) == 2 and set(result.routing) <= set(bot.manager.classes)
    test = read_source(str(result.path / "test.jsonl"), tmp_path).examples
    assert result.routing == held_out_routing(bot, test)  # the recorded test split, routed again: the same
    missed = result.routing.get("five", 0) < 2
    assert any("held-out test conversations" in w for w in result.warnings) == missed


def test_a_skill_the_manager_rarely_routes_to_is_warned_about_with_where_its_messages_went():
    from bot.skill_builder import routed_line, routing_warning

    assert routing_warning("shop", {"shop": 9, "tech_support": 1}) is None  # 90%: the target
    assert routing_warning("shop", {}) is None  # no manager
    warning = routing_warning("shop", {"tech_support": 21, "shop": 9, "none": 2})
    assert "only 9 of the skill's 32 held-out test conversations" in warning
    assert "21 to tech_support" in warning and "2 to the bare backbone (chit-chat)" in warning
    assert "--replace" in warning and "adapterbot:shop" in warning
    assert routed_line("shop", {"tech_support": 21, "shop": 9, "none": 2}) == (
        "routes 9 of 32 held-out test conversations to it (28%; each test example alone and after small talk)")
    assert routed_line("plants", {"plants": 8}).endswith("after small talk; only 4 test examples, too few to trust the share)")


def test_examples_longer_than_the_backbone_window_train_within_it(tiny_dir, skills_dir, tmp_path, capsys):
    import json

    rows = [{"context": [f"tell me about item {i} " * 6], "response": f"item {i} is a thing " * 6,
             "knowledge": f"item {i} facts " * 12} for i in range(30)]  # ~100 tokens against a 64-token window
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    knowledge = tmp_path / "long.txt"
    knowledge.write_text("".join(r["knowledge"] + "\n" for r in rows), encoding="utf-8")
    assert cli(tiny_dir, skills_dir, "skill", "add", "long", "--data", str(data), "--knowledge", str(knowledge),
               "--epochs", "1") == 0, capsys.readouterr().err
    assert "installed skill 'long'" in capsys.readouterr().out


def test_a_knowledge_skill_copies_its_passage_with_a_boost_chosen_on_validation(tiny_dir, skills_dir, tmp_path, capsys):
    import json

    from bot.skill_builder import COPY_BOOSTS, COPY_DECODING, MIN_BOOST_CHOICE
    from skills.spec import SkillSpec

    rows = [{"context": [f"what colour is thing {i}"], "response": f"thing {i} is colour {i % 7}"} for i in range(120)]
    data = tmp_path / "colours.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    knowledge = tmp_path / "colours.txt"
    knowledge.write_text("".join(f"what colour is thing {i}\nthing {i} is colour {i % 7}\n".replace("\n", " ", 1)
                                 for i in range(120)), encoding="utf-8")
    assert cli(tiny_dir, skills_dir, "skill", "add", "colours", "--data", str(data), "--knowledge", str(knowledge),
               "--epochs", "1") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    spec = SkillSpec.load(skills_dir / "colours")
    assert spec.splits["valid"] >= MIN_BOOST_CHOICE
    assert {k: getattr(spec.decoding, k) for k in COPY_DECODING if k != "copy_boost"} == \
        {k: v for k, v in COPY_DECODING.items() if k != "copy_boost"}  # nothing stops a copy
    f1 = {float(b): v for b, v in spec.card["copy_boost_valid_f1"].items()}
    assert set(f1) == set(COPY_BOOSTS)
    assert spec.decoding.copy_boost == max(COPY_BOOSTS, key=lambda b: (round(f1[b], 3), b))
    assert f"copy_boost {spec.decoding.copy_boost:g}, chosen on validation F1" in out


def test_a_taken_or_bad_name_is_refused_before_the_model_loads(tiny_dir, skills_dir, tmp_path, capsys):
    data = write_toy_data(tmp_path / "d.jsonl", "alpha")
    missing = tmp_path / "no-such-backbone"  # loading it would fail: the name's error must come first
    for name, said in (("alpha", "already"), ("../evil", "name")):
        code = cli(missing, skills_dir, "skill", "add", name, "--data", str(data))
        err = capsys.readouterr().err
        assert code == 2 and said in err and "no-such-backbone" not in err, err
