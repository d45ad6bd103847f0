"""What the bot says about itself: who it is and what it can do, from the installed skills' own cards.

The bare backbone learned from people talking to people, so asked "are you a bot?" it answered "yeah I think
so I think that would be cool to be a bot", and "what can you actually do?" got "I would love to work with
one of my favorite parts of my life" (session 12's trial). A new user's first question deserves a true
answer: these questions get a written one, listing each loaded skill's ``description``.
"""
from __future__ import annotations

import re
import zlib
from functools import lru_cache
from typing import Mapping

_YOU = r"(you|u|ya)"
CAPABILITIES = re.compile(
    rf"\b(what (can|could) {_YOU} (actually |even |really )?(do|help( me)? with)\b|what are {_YOU} (good at|able to do|for)\b"
    rf"|(what|which) (are )?(your )?(skills|features|abilities|commands)\b|how (can|could|do) {_YOU} help\b"
    rf"|what (kinds? of |sorts? of )?things can {_YOU}\b)|^\W*(help|menu|commands)\W*$", re.IGNORECASE)
"""Questions about what the bot can do."""

IDENTITY = re.compile(
    rf"\b((are|r) {_YOU} (a |an )?(real|human|person|people|bot|robot|ai|machine|computer|program|chat ?bot)\b"
    rf"|who (are|r) {_YOU}\b|who (made|created|built|programmed|trained|designed) {_YOU}\b"
    rf"|what (exactly |even |actually )?(are|r) {_YOU}\W*$|what'?s your name\b|is this (a )?(bot|robot|ai|human)\b"
    rf"|how old (are|r) {_YOU}\b|what('?s| is) your age\b"
    rf"|(are|r) {_YOU} (a )?(he|she|boy|girl|guy|man|woman|male|female)\b|what('?s| is) your gender\b"
    rf"|do {_YOU} have a gender\b|what (should|do|can) i call {_YOU}\b"
    rf"|what (are|r) {_YOU} exactly\b|(a|an) (real )?(person|human) (typing|or (a |an )?(bot|robot|program|ai|machine))\b"
    rf"|(are|r) {_YOU} (like |just )?(chat ?gpt|gpt|siri|alexa|gemini|claude)\b"
    rf"|{_YOU} or (chat ?gpt|gpt|siri|alexa|gemini|claude)\b|(chat ?gpt|siri|alexa|gemini|claude) or {_YOU}\b"
    rf"|do {_YOU} (actually |really |even )?(have|feel) (any )?(feelings|emotions)\b|can {_YOU} (actually |really )?feel\b"
    rf"|(are|r) {_YOU} (conscious|alive|sentient|self-aware)\b)",
    re.IGNORECASE)
"""Questions about who or what the bot is, its age included (the backbone answered "What is your age" with "Yes, I'm
an international student from Nigeria")."""

JOKE = re.compile(r"\b(tell|know|got|have|give|share|hear) (me |us )?(a |any |one |your |another )?"
                  r"(best |good |funny |favou?rite |bad |dad |corny )?([\w-]+ ){0,2}jokes?\b|\bmake me (laugh|smile)\b"
                  r"|\bsay something funny\b|^\W*(a |another )?jokes?( (please|pls|plz))?\W*$", re.IGNORECASE)
"""Asking for a joke ("got a cat joke for me?", "give me your best knock knock joke"): the backbone has none to tell (it
answered "that would be a great idea!" and "I can't think of any way I have ever heard of that one before")."""

_NOT_JOKES = ("comedian", "never forget a face", "better to be silent", "die peacefully", "balls")
"""Answers to "Tell me a joke" in chatterbot-corpus's ``humor`` file that are not jokes to tell a stranger: a
refusal, two insults to the listener, a joke about a fatal crash (a bot that talks to people in distress), a crude one."""


@lru_cache(maxsize=1)
def jokes() -> tuple[str, ...]:
    """The jokes :func:`about_reply` tells: chatterbot-corpus's answers to "Tell me a joke", tidied (spacing, a capital
    first letter), without :data:`_NOT_JOKES`."""
    from skills.corpora import chatterbot_conversations

    told = []
    for conversation in chatterbot_conversations(["humor"]):
        if conversation.turns[0].lower() != "tell me a joke":
            continue
        joke = " ".join(conversation.turns[1].split())
        if not any(word in joke.lower() for word in _NOT_JOKES):
            told.append(joke[0].upper() + joke[1:])
    return tuple(told)

WORDLESS = re.compile(r"^[\W_]*$")
"""A message without a letter or digit (emoji, symbols): nothing the manager or a skill can read; Auto mode answers it
on the bare backbone (:meth:`bot.chatbot.AdapterBot.respond`), which the manager had sent "😂😂🔥👍" to trivia at 1.00."""

# Function words of Spanish, French, German, Italian and Portuguese that English does not use, and English's own.
_FOREIGN = frozenset("""
que qué por porque para pero muy está estoy esto eso ella ellos usted hola gracias tengo tiene puedo quiero como cómo
mi se el es su sus al ese esa nada algo ordenador computadora teléfono celular enciende funciona
dónde cuando cuándo del los las una unos nuestro también hay sí señor ayuda favor buenos días noches hablas habla hablo
español espanol inglés parlez parles parle français francais anglais sprichst sprechen deutsch englisch parli italiano
falas fala português
le les des est je tu il nous vous ils elle sont suis mais avec pour dans sur pas très être avoir ça cette ces mon ton
bonjour merci oui non comment aujourd qui quoi où pourquoi
der das und ist ich nicht mein meine ein eine einen zu mit auf sie wie warum wo bitte danke ja nein haben sein bin du
er wir ihr sind kann habe hast heute meinen meinem einen sehr auch noch schon aber oder wenn weil
il che non è sono mio mia della delle gli questo questa perché grazie ciao buongiorno molto
não você é um uma meu minha obrigado olá isso isto está eu tudo bem
""".split())
_ENGLISH = frozenset("""
the a an and is are was were i you he she it we they my your our this that what how why where when who to of in on for
with not do does did have has can will be am just so but if or at from me him her them its there their about like get
got dont cant im hi hey hello thanks please yes no
""".split())
_LETTERS = re.compile(r"[^\W\d_]+")


def not_english(message: str) -> bool:
    """Whether ``message`` reads as another language than English: mostly letters outside a-z (another script, or
    accents), or two or more function words of Spanish, French, German, Italian or Portuguese outnumbering English
    ones. Short greetings ("hola", "merci beaucoup") pass. Of the Chit-Chat corpus's 135,574 messages it flags 22, 21
    of them Spanish, French, German or Portuguese ("hablas espanol???"); of the user trials' messages, none
    (session 16: "Mi ordenador no se enciende" had got "so what's your major?")."""
    words = _LETTERS.findall(message.lower())
    letters = "".join(words)
    if not letters:
        return False
    if sum(not "a" <= c <= "z" for c in letters) > 0.3 * len(letters):
        return True
    foreign = sum(w in _FOREIGN for w in words)
    return foreign >= 2 and foreign > sum(w in _ENGLISH for w in words)


def unreadable(message: str) -> bool:
    """A message the manager and the skills cannot read: without words (:data:`WORDLESS`), or not English
    (:func:`not_english`; the backbone and the skills learned English only, and a Spanish question got "Poriara
    porch favor."). Auto mode does not route it; :func:`about_reply` answers it in writing."""
    return bool(WORDLESS.match(message)) or not_english(message)


def asks_about_the_bot(message: str) -> bool:
    """Whether ``message`` asks what the bot is or can do, or for a joke: Auto mode answers it in writing
    (:func:`about_reply`) without routing, where the manager had sent "make me laugh, bonus points if its about cheese"
    to the empathetic skill ("I'm so sorry to hear that."). No skill's training or test message matches these."""
    return any(rx.search(message) for rx in (CAPABILITIES, IDENTITY, JOKE))


NAME = "Adapter-Bot"


def about_reply(message: str, skills: Mapping[str, str]) -> str | None:
    """The written answer to ``message`` when it asks what the bot is or can do (a joke, say), else ``None``.

    ``skills`` maps each loaded skill's name to its one-line description."""
    if WORDLESS.match(message):
        return "I can only read words for now, not emoji or symbols on their own. What's on your mind?"
    if not_english(message):
        return "Sorry, I only understand English for now. Could you say that in English?"
    listed = "\n".join(f"- {name.replace('_', ' ')}: {text.strip() or 'no description'}" for name, text in skills.items())
    if CAPABILITIES.search(message):
        if not skills:
            return f"I'm {NAME}, a chatbot. No skills are installed yet, so for now I can only chat."
        return f"I'm {NAME}, a chatbot with a few skills:\n{listed}\nOr we can just chat."
    if IDENTITY.search(message):
        skilled = f" with a few skills ({', '.join(name.replace('_', ' ') for name in skills)})" if skills else ""
        return (f"I'm {NAME}, a chatbot, not a person: a small language model trained by the {NAME} project{skilled}. "
                "Ask me what I can do, or just chat.")
    if JOKE.search(message):
        told = jokes()
        return told[zlib.crc32(message.lower().encode("utf-8")) % len(told)]
    return None
