import pytest

from skills.first_steps import FirstSteps
from skills.knowledge import write_passages

STEPS = {"apps": "Close the app and update it.", "sync": "Check the cloud account has space.", "wifi": "Restart the router."}


@pytest.fixture
def steps(tmp_path) -> FirstSteps:
    passages = ["app apps instagram tiktok upload\n" + STEPS["apps"], "icloud onedrive sync upload uploading\n" + STEPS["sync"],
                "wifi wi-fi router internet\n" + STEPS["wifi"]]
    return FirstSteps(write_passages(passages, tmp_path / "first_steps.jsonl"))


def test_a_message_gets_the_steps_of_the_topic_it_names_most_rarely(steps):
    assert steps.steps_for("instagram wont post my reel, couldn't upload") == STEPS["apps"]  # upload is in two topics
    assert steps.steps_for("icloud photos has said uploading for 4 days") == STEPS["sync"]
    assert steps.steps_for("the Wi-Fi drops every evening") == steps.steps_for("my wifi drops") == STEPS["wifi"]


def test_a_message_naming_no_topic_gets_none(steps):
    assert steps.steps_for("how many ounces in a pound") is None
    assert steps.steps_for("") is None


def test_an_everyday_word_alone_names_no_topic_a_device_or_phrase_does(tmp_path):
    steps = FirstSteps(write_passages(["word excel office microsoft_office\nReopen the app.", "xbox game games\nRestart it."],
                                      tmp_path / "first_steps.jsonl"))
    assert not steps.names_topic("do you have a favorite word?") and not steps.names_topic("the office is split on it")
    assert not steps.names_topic("whats your favourite game")
    assert steps.names_topic("excel is acting up") and steps.names_topic("my xbox again")
    assert steps.names_topic("reinstalled microsoft office")  # a phrase of everyday words still names its topic
    assert steps.steps_for("do you have a favorite word?") == "Reopen the app."  # the steps, once it is tech support's


def test_only_the_topic_line_is_matched_not_the_steps(steps):
    assert steps.steps_for("i need to restart my router") == STEPS["wifi"]
    assert steps.steps_for("should i close the lid") is None  # "close" is in the apps steps, not its topic


def test_says_steps_knows_its_own_replies_word_for_word(steps):
    assert steps.says_steps("  " + STEPS["sync"]) and not steps.says_steps("Restart the router and the modem.")


def test_a_passage_without_steps_is_an_error_naming_the_file_and_passage(tmp_path):
    path = write_passages(["apps instagram\nClose the app.", "wifi router with no steps"], tmp_path / "steps.jsonl")
    with pytest.raises(ValueError, match=r"steps\.jsonl: passage 2: expected the topic's words"):
        FirstSteps(path)


def test_a_phrase_names_its_topic_and_its_words_name_no_other(tmp_path):
    passages = ["iphone android galaxy phone\nRestart the phone.", "garmin smartwatch galaxy_watch apple_watch\nSync the watch.",
                "mac macbook\nRestart the Mac."]
    steps = FirstSteps(write_passages(passages, tmp_path / "steps.jsonl"))
    assert steps.steps_for("my galaxy watch shows the wrong time") == "Sync the watch."
    assert steps.steps_for("my Galaxy  Watch 5 shows the wrong time, the time on my phone is right") == "Sync the watch."
    assert steps.steps_for("my galaxy keeps restarting") == "Restart the phone."
    assert steps.steps_for("watch face is stuck") is None  # the phrase's words alone name nothing


def test_of_topics_that_score_the_same_the_one_named_first_wins(tmp_path):
    passages = ["email gmail outlook\nCheck the spam folder.", "computer laptop windows\nRestart the computer."]
    steps = FirstSteps(write_passages(passages, tmp_path / "steps.jsonl"))
    assert steps.steps_for("my laptop is slow even when i'm only reading email") == "Restart the computer."
    assert steps.steps_for("email won't send from my laptop") == "Check the spam folder."


def test_trouble_fits_when_something_named_by_a_topic_is_not_working(steps):
    assert steps.fits_trouble("xbox party chat: my friends cant hear me on the wifi")
    assert steps.fits_trouble("tiktok keeps crashing when i open it")
    assert not steps.fits_trouble("just got a new wifi router, so fast!")  # a topic, no trouble
    assert not steps.fits_trouble("my knee is broken")  # trouble, no topic
