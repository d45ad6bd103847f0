"""The social edges of a conversation: greetings, thanks and farewells, either-or questions, and which reply fits which.

The Chit-Chat corpus opens every conversation with a greeting and closes every one with a farewell,
so the small backbone trained on it finds both likely after almost any message: ranked by likelihood
alone, "hey!" got "Well I have to go to class now. Have a great day!" and "ok gotta go, talk later!"
got "Hello!". A ranked chit-chat reply therefore keeps the likeliest candidate of the lowest
:func:`misfit` (``Request.misfit``): a greeting answers a greeting, thanks get a "you're welcome",
a farewell gets one back, and neither opens nor closes a conversation that the user didn't.

Thanks and farewells are answered with a written reply instead (:func:`closing_reply`): the corpus has almost
no thanks answered with a "you're welcome" (15 thanks after 3 histories: none of 24 samples each fitted), and
the backbone's farewells that fit read garbled as often as not ("You are a good night!", "I don't think I'll
have to go to bed."; session 13, docs/DESIGN.md, "Open chit-chat").
"""
from __future__ import annotations

import re
import zlib

from skills.knowledge import says_it_worked

FAREWELL = re.compile(r"\b(bye+|goodbye|good ?night|gotta (go|run)|got to go|have to go|need to go|have to leave|"
                      r"talk (to you )?(later|soon)|ttyl|see (you|ya)|catch you later|take care|nice (talking|chatting)|"
                      r"(good|great) (talking|chatting)|thanks for (the )?chat(ting)?|thanks for listening|"
                      r"(off|going|gonna go) to (bed|sleep)|go lie down|have a (good|great|nice) (day|night|one|rest)|take it easy(?=\W*$)|"
                      r"me done for (the day|the night|today|tonight|now)|bedtime for me|time for bed|"
                      r"that'?s (it|enough|all) for (tonight|today|now|me))\b"
                      r"|\b((gonna|going to|about to) (go|head (out|off|home)|log ?off|sign ?off|crash)|"
                      r"heading (out|off|home)|logging off|signing off)( now| for (the day|tonight|today|now))?(?=\s*([^\w\s]|$))"
                      r"|(^|[.,!;])\W*((ok|okay|alright|thanks|thx)\W+)*(later|night|nite|gn|cya|l8r|laters|later,? (gator|alligator)|peace( out)?|"
                      r"cheerio|ta-?ra|toodles|toodle-?oo|adios|au revoir|sayonara|ciao|(allah|khuda) hafiz)( for now)?\W*$", re.IGNORECASE)
"""Words that take leave."""

_HELLO = (r"^\W*((oh|well|and)\W+)?(hi+|hello+|hey+|hiya|heya|howdy|yo|gm|good (morning|afternoon|evening)|morning|"
          r"evening|greetings|g'?day|aloha|hola|buenas( (dias|días|tardes|noches))?|bonjour|salut|ciao|hallo|namaste|"
          r"kia ora|selamat (pagi|siang|sore|malam)|top o(f|') the morning?'?|(as-?)?sala(a?m)(u|o)?( o)? ?(alaikum|alaykum)|"
          r"salaam|guten (tag|morgen)|buongiorno|bom dia|konnichiwa|ni hao)\b")
GREETING = re.compile(_HELLO, re.IGNORECASE)
"""Words that open a message with a greeting ("hey, my wifi is down" opens with one)."""

_WHO = (r"(\W*(there|stranger|friend|buddy|bot|mate|pal|everyone|all|folks|y'?all|again|hi+|hey+|hello+|yo|oi"
        r"|good (morning|afternoon|evening)|morning))*")
"""Words a greeting may call the other, or another greeting ("howdy stranger", "hey hey there friend", "hola! good
morning")."""
_ASKING_AFTER = (r"(how (are|r) (you|u)|how('?s| is) it going|how('?s| is) (your|ur) (day|night|evening|morning|week|weekend)"
                 r"( going)?|what'?s up|wh?at'?s good|sup|wass+up|wazz+up|whaddup|what'?s (poppin'?g?|crackin'?g?)"
                 r"|how have you been|how (are|r) things|how'?s (life|everything|things))")
"""Words that ask after the other ("how are you", "what's up")."""
_MEET = r"\bto meet you\b"
_THERE = r"((are|r) )?(you|u|anyone|anybody) (there|around|awake|online)"
"""Asking whether anyone is there ("hey, you around?", "hello? anyone there?")."""
ONLY_GREETING = re.compile(_HELLO + _WHO + r"(\W+" + _THERE + r")?\W*(" + _ASKING_AFTER + r"\b.*)?$|" + _MEET
                           + r"|^\W*" + _ASKING_AFTER + _WHO + r"\W*$|^\W*" + _THERE + r"\W*$", re.IGNORECASE)
"""A greeting that says nothing else, or only asks after the other ("Hello!", "hey, how are you doing this
fine evening?", "nice to meet you", "wassup bot")."""

BARE_GREETING = re.compile(_HELLO + _WHO + r"\W*$", re.IGNORECASE)
"""Greeting words and nothing else ("heyyy", "good morning!", "hi there")."""

LAUGHS = re.compile(r"\b(lol+|lmao+|lmfao|haha+|hehe+|rofl|yay+|woo+hoo+)\b|:-?\)|:-?D\b|😂|🤣|😅|😄|😁|😆|🎉|🥳|😊|🙂|"
                    r"😀|😃|😍|🥰|🙌|🎊|🍾|🥂", re.IGNORECASE)
"""A laugh or a celebration: in the user trials, 48 of 314 small-talk messages had one ("...a fancy croissant to celebrate
lol", "i pass my B2 english exam!! 🎉🎉") against 1 of ``empathetic.jsonl``'s 406 messages and none of the trials' 240 hard
things told, but for two that opened with "lol" ("lol ok. not gonna lie im kinda lonely lately"). Smiles and cheers
(":)", "yay", 🙂, 🥂) were in none of those 646 hard messages either ("my sister had her baby last night, im an uncle
now :)" got "Oh no, that sounds really hard", a new user in session 21); hearts are left out: grief writes them."""
_OPENING_LAUGH = re.compile(r"^\W*(lol+|haha+)\b", re.IGNORECASE)


def laughs(message: str) -> bool:
    """Whether ``message`` laughs or celebrates (:data:`LAUGHS`) after its first word: a "lol" that opens a message is
    a way to begin, not a laugh."""
    return LAUGHS.search(_OPENING_LAUGH.sub("", message)) is not None


GOOD_NEWS = re.compile(r"!!|\b(finally|first (time|ever|try)|proud|so (happy|excited|glad)|excited|can'?t wait|10/10|"
                       r"made my (whole )?(day|week|year)|we won|won the|got engaged|passed my|i passed|regret nothing|"
                       r"new person|best day|cutest|restored|not even mad|beat (my|him|her|them)|personal (record|best))\b",
                       re.IGNORECASE)
"""Words of good news or a good moment ("finally finished my first marathon today!!", "made my whole week")."""
ADVERSITY = re.compile(r"\b(di(e|ed|es|ing)|death|dead|passed|funeral|cancer|diagnos\w*|hospital|lost|los(e|ing)|fail\w*|"
                       r"scar\w+|slip\w*|hurt\w*|pain\w*|cr(y|ied|ying)|sad|alone|lonely|fired|laid off|divorc\w*|broke|"
                       r"scam\w*|stole\w*|evict\w*|debt|sick|ill|surgery|worr\w+|anxi\w+|stress\w*|afraid|miss\w*|sorry|"
                       r"awful|terrible|horrible|depress\w*|rejected|denied|dump\w*|cheat\w*|abuse\w*|relaps\w*|"
                       r"heart ?attack|stroke|tumou?r|chemo\w*|can'?t|cant|won'?t|never|no one|nobody|ruin\w*|fever|flu|"
                       r"covid|injur\w*|accident|ambulance|shak\w*|shook|trembl\w*|tears?|grie\w*|mourn\w*|cancel\w*|"
                       r"burnt|burned|caught)\b", re.IGNORECASE)
"""Words of something bad happening, which no good news told alone holds ("finally went on holiday... stuck in the
hotel room with a fever", "hosted my in laws for the first time and burnt the roast")."""


def good_news(message: str) -> bool:
    """Whether ``message`` tells good news (:data:`GOOD_NEWS`) and nothing bad (:data:`ADVERSITY`). Of 713 hard things
    told (the empathetic skill's data and every trial's), 2 read so ("finally told my crush... she just sees me as a
    friend", "my therapist told me today shes moving states... and i finally felt like..."); of the trials' 48
    small-talk messages the manager sends to the empathetic skill, 19 (session 22; in-sample: both lists were written
    while reading those messages)."""
    return GOOD_NEWS.search(message) is not None and ADVERSITY.search(message) is None


THANKS = re.compile(r"\b(thank(s| you| u)|thx|ty|cheers|appreciate (it|that|you))\b", re.IGNORECASE)
"""Words that thank."""

WELCOME = re.compile(r"\b(you'?re welcome|no problem|no worries|any ?time|my pleasure|glad (i|to|that|it)|happy to help)\b",
                     re.IGNORECASE)
"""Words that answer thanks."""


_THANKS_FOR = re.compile(r"\bthanks for (the )?(chat(ting)?|listening)\b", re.IGNORECASE)
"""Thanks that :data:`FAREWELL` reads as leave-taking, though the user may go on ("thanks for listening")."""


_ASKS_AFTER = re.compile(r"\b" + _ASKING_AFTER + r"\b", re.IGNORECASE)
_MINE = re.compile(r"\b(i|i'?m|i'?ve|me|my|mine|we|our|us)\b", re.IGNORECASE)
GREETING_REPLIES = ("Hi! How's it going?", "Hey there! How's your day been?", "Hello! How are you today?")
ASKED_AFTER_REPLIES = ("I'm doing well, thanks for asking! How about you?", "Pretty good, thanks! How's it going with you?",
                       "All good here! How are you doing?")


def only_greets(message: str) -> bool:
    """Whether ``message`` only greets, or greets and asks after the bot, telling nothing of the user's own
    (:data:`ONLY_GREETING`, no "i", "my", ...): "yo yo yo whats good 🤙", "hiya 👋", "hey, how are you?". Auto mode
    answers it in writing (:func:`greeting_reply`) without routing: the manager had sent "yo yo yo whats good" to
    trivia, which said it didn't know, and the backbone's best of 8 for "hiya 👋" was "I think I've seen that one
    before" (session 19's trial)."""
    return ONLY_GREETING.search(message) is not None and _MINE.search(message) is None


def greeting_reply(message: str) -> str | None:
    """The written reply to a message that :func:`only_greets` (one of :data:`ASKED_AFTER_REPLIES` when it asks
    after the bot, else of :data:`GREETING_REPLIES`, picked by the message's checksum), or ``None``."""
    if not only_greets(message):
        return None
    if re.search(_MEET, message, re.IGNORECASE):
        return "Nice to meet you too! What's on your mind?"
    replies = ASKED_AFTER_REPLIES if _ASKS_AFTER.search(message) else GREETING_REPLIES
    return replies[zlib.crc32(message.strip().lower().encode("utf-8")) % len(replies)]


_WELL = (r"(good|great|fine|not (too |so )?bad|pretty (good|well)|very well|all good|can'?t complain|"
         r"(i'?m|im|i am|doing|been|all) (good|great|fine|ok(ay)?|well|alright|grand|not bad)( too)?)")
_THANKED = r"(?P<thanked>(thanks|thank you|thx|ty|cheers)( for asking)?)"
_BACK = r"(?P<back>((and|how|what) )?(about )?(you|u|yourself|hbu|wbu|how are (you|u)|how'?s yours|you doing))"
WELL_BEING = re.compile(rf"^\W*((yeah|yes|yep|oh|ya|hey|hi)\W+)*{_WELL}(\W+{_THANKED})?(\W+{_BACK})?\W*$", re.IGNORECASE)
"""An answer to "how are you" and nothing else ("good thanks, you?", "im fine hbu", "not bad, and you?")."""


def well_being_reply(message: str) -> str | None:
    """The written reply to a message that says the user is well and thanks or asks back (:data:`WELL_BEING`), else
    ``None``. "good thanks, you?", after the bot's "How's your day been?", had got the thanks' "You're welcome!"."""
    match = WELL_BEING.search(message)
    if match is None or not (match.group("thanked") or match.group("back")):
        return None
    if match.group("back"):
        return "I'm doing well too, thanks! What's on your mind today?"
    return "Glad to hear it! What's on your mind today?"


def says_goodbye(text: str) -> bool:
    """Whether ``text`` takes leave (:data:`FAREWELL`)."""
    return FAREWELL.search(text) is not None


def says_hello(text: str) -> bool:
    """Whether ``text`` opens with a greeting (:data:`GREETING`)."""
    return GREETING.search(text) is not None


def misfit(message: str, reply: str) -> int:
    """How far ``reply`` misses where ``message`` stands in a conversation: 0 fits, 1 misses, 2 misses most,
    3 is an empty reply.

    - To a farewell: a farewell or a "you're welcome" fits; a bare greeting misses most.
    - To thanks: a "you're welcome" fits; a bare greeting or a farewell misses most.
    - To a greeting: a greeting fits, and so does anything else if it also asks after the bot ("hi, how's your
      day?"); a farewell misses most.
    - To anything else: a farewell misses, and so does a bare greeting unless the message opens with one.
    """
    message, reply = message.strip(), reply.strip()
    if not reply:
        return 3  # an empty reply (end-of-text sampled first) loses to every other
    greeting, farewell = ONLY_GREETING.search(reply) is not None, says_goodbye(reply)
    welcome = WELCOME.search(reply) is not None
    if says_goodbye(message):
        return 0 if farewell or welcome else 2 if greeting else 1
    if THANKS.search(message):
        return 0 if welcome else 2 if greeting or farewell else 1
    if ONLY_GREETING.search(message):  # a bare greeting wants one back; "hi, how's your day?" an answer too
        return 2 if farewell else 0 if greeting or not BARE_GREETING.search(message) else 1
    return int(farewell or (greeting and not says_hello(message)))


_CLOSING_REST = re.compile(r"\b(you'?ve|have|ok(ay)?|alright|anyway|well|so|man|dude|bro|buddy|bot|again|a|lot|much|very|for|the|"
                           r"your|ur|all|help|everything|now|today|then|lol|haha|really|being|patient|with|me|us|night|nite|"
                           r"later|soon|tomorrow|cya|peace|fr|i|im|i'm|you|u|it|that|thats|that's|and|mate|helps|helped|helpful|great|perfect|awesome|"
                           r"works?|worked|working|fixed|sorted|solved|did|trick|is|its|it's|back|to|normal|good|been|such|"
                           r"super|big|amazing|lifesaver|legend|star|kind|letting|vent|venting|rant|ranting)\b", re.IGNORECASE)
"""Words that may go with thanks or a goodbye and ask for nothing ("thanks so much for the help, bye for now", "ok that
worked, thanks!")."""


def only_closing(message: str) -> bool:
    """Whether ``message`` only thanks or takes leave ("appreciate it, take care", "ok thanks, ttyl"), with nothing
    else to answer: Auto mode answers it in writing (:func:`closing_reply`) without routing, where after a tech
    exchange the manager had sent "appreciate it, take care" to tech support, which asked which device it was."""
    if closing_reply(message) is None:
        return False
    rest = _CLOSING_REST.sub(" ", THANKS.sub(" ", FAREWELL.sub(" ", message)))
    return re.search(r"[^\W\d_]{2,}", rest) is None


def takes_leave(message: str) -> bool:
    """Whether ``message`` takes leave: a farewell (:data:`FAREWELL`) other than thanks for listening or for the chat,
    after which the user may go on."""
    return says_goodbye(_THANKS_FOR.sub("", message))


def closing_reply(message: str) -> str | None:
    """The written reply to thanks or a farewell (its :func:`misfit` is 0), or ``None`` for any other message."""
    thanks = THANKS.search(message) is not None
    if takes_leave(message):  # "thanks for listening" thanks; it need not take leave
        return "You're welcome! Bye, talk to you soon." if thanks else "Bye! It was nice talking with you."
    if not thanks:
        return None
    return "Glad it worked! You're welcome." if says_it_worked(message) else "You're welcome!"


_CHOOSE = re.compile(r"\?|\b(pick|choose|rather|prefer|better|settle|team|vote|which|agree)\b", re.IGNORECASE)
_NO_OPTION = frozenset("i i'm im you your we do does did would should could can is are was it its it's be prefer rather "
                       "like pick choose better pronounced which what who not no nah never something anything whatever "
                       "both neither else otherwise".split())
_AFTER_OPTION = frozenset("for in on at to with from during than more most better best this that these those tonight today "
                          "now rn lol haha which would do".split())
_FACT = re.compile(r"\b(what|whats|what's|how|who|whos|who's|where|when|why)\b", re.IGNORECASE)
CHOICE_REPLIES = ("Tough one! I'll say {}. What about you?", "Easy: {}. Which do you pick?", "Hmm, I'd go with {}. You?")


def choice_reply(message: str) -> str | None:
    """The written reply to an either-or question ("tea or coffee?", "cats or dogs, you have to pick one", "would you
    rather fight one horse sized duck or 100 duck sized horses"): one of the two, picked by the message's checksum
    (the same message, the same pick), else ``None``.

    The options are the one to four words after the clause's only "or" (up to a word such as "for" or "which": "beach
    or mountains for a vacation, which would you pick") and as many before it, none of them a pronoun, a verb of
    choosing or a non-option ("not", "both"). The message asks ("?") or says to choose ("pick", "rather", "settle",
    ...), and asks no what, how, who, where, when or why: "whats the longest river, nile or amazon?" is a fact, not a
    matter of taste. The small backbone answered such questions with whatever its corpus talks about ("tea or
    coffee?" -> "Do you have a favorite book?", session 17's trial).
    """
    if not _CHOOSE.search(message) or _FACT.search(message):
        return None
    for clause in re.split(r"[?.!,;:]", message):
        words = re.findall(r"[\w'-]+", clause)
        lower = [w.lower() for w in words]
        if lower.count("or") != 1:
            continue
        at = lower.index("or")
        ends = [i for i, w in enumerate(lower[at + 1:]) if w in _AFTER_OPTION]  # "mountains for a vacation, which..."
        after = words[at + 1:][:ends[0]] if ends else words[at + 1:]
        before = words[at - len(after):at] if len(after) <= at else []
        if not 1 <= len(after) <= 4 or not before or _NO_OPTION & {w.lower() for w in before + after}:
            continue
        pick = zlib.crc32(message.encode("utf-8"))
        return CHOICE_REPLIES[pick // 2 % len(CHOICE_REPLIES)].format(" ".join((before, after)[pick % 2]))
    return None
