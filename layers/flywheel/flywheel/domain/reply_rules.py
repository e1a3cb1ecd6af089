"""The offline reply classifier: VADER polarity plus rules for what polarity cannot see.

Deterministic and network-free. Rules are tried from the most specific signal to the least
(an automatic reply or a named referral says more than the words "not interested" around it).
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from flywheel.domain.reply_text import reply_text
from flywheel.models.classification import Classification

FALLBACK_MODEL = "rules+vader-v1"


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


OUT_OF_OFFICE = _any(
    r"\bout of (?:the )?office\b", r"\booo\b", r"\bon (?:annual |parental |maternity |paternity |sick )?leave\b",
    r"\bon (?:vacation|holiday)\b", r"\baway from (?:the |my )?(?:office|desk)\b", r"\btravell?ing (?:this|until)\b",
    r"\blimited (?:access to )?e-?mail\b", r"\bwill (?:be back|return|respond when)\b",
    r"nicht im büro", r"\babwesend\b", r"\bim urlaub\b", r"absente? du bureau", r"\ben congés?\b",
    r"fuera de la oficina", r"\bde vacaciones\b", r"fuori ufficio", r"\bin ferie\b", r"\bafwezig\b",
)
AUTOMATED = _any(
    r"\bautomated\b", r"\bautomatic(?:ally)? (?:reply|response|acknowledge?ment)\b", r"\bauto-?(?:reply|response)\b",
    r"\bdo not reply\b", r"\bnot (?:being )?monitored\b", r"\bunattended\b", r"\bno longer in use\b",
    r"\bticket #?\s?\d+", r"\bcase (?:has been )?opened\b", r"\breference: ?[a-z]*-?\d+",
    r"(?:we have|we've) (?:received|got) your (?:message|e-?mail|request)", r"\byour (?:message|e-?mail) has been "
    r"(?:received|delivered)", r"\bdelivery notification\b", r"automatische antwort", r"réponse automatique",
    r"respuesta automática", r"(?:messages|e-?mails) are not read\b", r"\bsent automatically\b",
    r"\bunmonitored\b", r"\b(?:request|ticket|case) \(?#\d+\)?", r"\bbeing reviewed by our (?:support|team)\b",
    r"\bwe (?:got|received) your e-?mail\b", r"\breplies (?:typically|usually) take\b",
    r"\b(?:logged|registered|recorded) as #?\d+", r"^\s*auto[- ]?reply\b", r"\binbox is (?:checked|monitored|read)\b",
    r"\ballow \d+ (?:hours|business days|days) for a (?:response|reply)\b",
    r"\bsomeone will (?:follow up|get back)\b", r"\bthis (?:is an? )?(?:auto|automated)\b",
)
UNSUBSCRIBE = _any(
    r"\bunsubscribe\b", r"\bremove (?:me|my (?:e-?mail|address))\b", r"\btake me off\b", r"\bopt (?:me )?out\b",
    r"\bstop (?:e-?mailing|emailing|contacting|sending|messaging)\b", r"^\s*stop\s*[.!]*\s*$",
    r"\bdo(?:n't| not) (?:e-?mail|contact|message) me\b", r"\bno more e-?mails\b", r"\bgdpr\b",
    r"entfernen sie mich", r"\babmelden\b", r"désinscri", r"\bdarme de baja\b", r"^\s*remove\s*[.!]*\s*$",
    r"\b(?:take|delete|remove) my (?:e-?mail|address|details|data)\b", r"\bget my (?:e-?mail|address) off\b",
    r"\boff (?:your|the) (?:list|database|"
    r"mailing list|distribution)\b", r"\bstop e-?mailing\b",
)
REFERRAL_ROUTING = _any(
    r"\b(?:reach out to|talk to|speak (?:to|with)|contact|try|loop(?:ing)? in|cc'?(?:ing|d)|copying|forwarded "
    r"(?:this|it|your (?:note|email|message))? ?to|best person (?:to talk to )?is|would be the (?:one|person) to)\b",
    r"\bmy (?:successor|colleague)\b", r"wenden sie sich an", r"\bcontacte[rz]?\b", r"\bmight be interested\b",
    r"\badding\b", r"\bhanded (?:this|it) (?:over )?to\b", r"\bpassed (?:this|it|your \w+) (?:on|along)? ?to\b",
    r"\bnot me\b", r"\bowns?\b.{0,30}\b(?:here|process|systems?|team)\b", r"\bis the (?:one|person)\b",
    r"\bwant to talk to\b", r"\bsend (?:this|it) to\b", r"\bthey (?:decide|handle|own)\b", r"\bwho runs\b",
)
WRONG_PERSON = _any(
    r"\bnot the (?:right|correct|best) (?:person|contact|ansprechpartner)", r"\bwrong (?:person|contact|\w+ - i'?m)\b",
    r"\bdon't (?:handle|deal with|work on)\b", r"\bno longer (?:work|am|with|handle)\b",
    r"\bleft (?:the company|\w+ in)\b",
    r"\bnot (?:my|in my) (?:area|department|team|role|call to make on this)\b", r"\bnot responsible for\b",
    r"\bnot involved in\b", r"\bwrong \w+ - i", r"nicht die richtige", r"\bi'?m (?:in|an?) (?:hr|marketing|engineer|"
    r"sales|legal|it)\b", r"\byou(?:'ve)? (?:reached|have) the wrong\b", r"\bnot the person\b",
    r"\b(?:retired|moved on) from\b", r"\bi'?m (?:just )?an? (?:intern|assistant|student|contractor)\b",
    r"\bwrong department\b", r"\bdon'?t make (?:these|those|the|that) decisions?\b",
    r"\b(?:don'?t|do not|no longer) work (?:there|here|at|for)\b", r"\bwrong (?:guy|gal|one|address|email)\b",
    r"\banymore\b.{0,20}$",
)
NOT_NOW = _any(
    r"\bnot (?:right )?now\b", r"\bnot (?:a priority|this (?:quarter|year|half|month))\b", r"\bbad timing\b",
    r"\btiming isn'?t (?:great|right|good)\b", r"\b(?:next|this coming) (?:quarter|year|fiscal)\b",
    r"\bin (?:a few|six|\d+) months\b", r"\b(?:circle|check) back\b", r"\brevisit\b", r"\btouch base in\b",
    r"\breach out (?:again )?in (?:q\d|the|a|\d)", r"\b(?:try|ping|follow up with) me (?:in|after)\b",
    r"\bfollow up in\b", r"\bafter (?:the )?(?:holidays|audit|migration|reorg|new year)\b",
    r"\buntil (?:january|february|march|april|may|june|july|august|september|october|november|december|q\d)\b",
    r"\b(?:hiring|budget) freeze\b", r"\bnothing new this\b", r"\bonce the \w+ settles\b", r"\bmid next year\b",
    r"pas pour le moment", r"recontactez-moi", r"\bmomentan nicht\b", r"\bahora no\b",
    r"\b(?:ask|contact|email|reach) (?:me|us|back out)? ?(?:again )?(?:in|after) (?:q\d|the|our|a|\d|next)",
    r"\blater (?:in|this) (?:20\d\d|the year|year)\b", r"\bnext (?:few|couple of) months\b", r"\bwill have to wait\b",
    r"\bafter (?:our|the) (?:fiscal|financial) year\b", r"\b(?:packed|swamped|slammed) (?:until|through|for)\b",
    r"\bmonths are (?:packed|busy|full)\b", r"\bgive it (?:a (?:couple|few)|some|\d+) (?:of )?(?:months|weeks|time)\b",
    r"\bmaybe later\b", r"\b(?:right now|currently) (?:we'?re|we are) (?:focused|busy|heads-?down)\b",
    r"\b(?:new|next) (?:year|quarter|fiscal)\b", r"\bmid-?(?:reorg|migration|project|audit)\b",
)
MEETING = _any(
    r"\b(?:schedule|set up|book|find|grab|arrange)\b.{0,25}\b(?:call|meeting|time|demo|slot|chat|minutes)\b",
    r"\bsend (?:me |over )?an? (?:calendar |meeting )?invite\b", r"\bsend (?:me |over )?a (?:meeting|calendar) "
    r"(?:invite|request)\b", r"\bmeeting invite\b", r"\bjump on a (?:quick )?call\b", r"\bcall me\b",
    r"\b(?:are you|you) (?:free|available)\b", r"\bworks for me\b", r"\bcan we do\b", r"\blet'?s talk\b",
    r"calendly\.com/", r"\bmy calendar\b", r"\bwhat does your calendar\b", r"\bhow about (?:next|mon|tue|wed|thu|fri)",
    r"\bsee a demo\b", r"\b\d{1,2}(?::\d{2})? ?(?:am|pm)\b", r"termin\b.{0,30}vereinbaren", r"\bon se (?:parle|voit)\b",
    r"\bon the calendar\b", r"\b(?:do|have) a \d+[- ]minute\b", r"\bintro (?:call )?on\b",
    r"\b(?:on )?(?:monday|tuesday|wednesday|thursday|friday) at \d", r"\bwalk me through\b",
    r"\bi'?m (?:around|free) (?:tomorrow|today|on|this|next|most)\b", r"\bset up time\b", r"\bmy (?:assistant|ea)\b",
    r"\blet'?s (?:meet|chat|connect|do it|find)\b", r"\bbook \d+ ?min", r"\bhere'?s my (?:link|calendar)\b",
    r"\bdoes (?:monday|tuesday|wednesday|thursday|friday|tomorrow)\b.{0,20}\bwork\b", r"\bcal\.com/",
)
COMPETITOR = _any(
    r"\balready (?:use|using|have|work with|working with)\b", r"\bsigned (?:a |with)\b.{0,40}",
    r"\bhappy with (?:our|it|them|the one)\b", r"\bcurrent (?:provider|vendor|solution|tool|platform)\b",
    r"\blocked into\b", r"\bexisting (?:platform|provider|vendor|contract)\b", r"\bwe use \w+",
    r"\b(?:a|an) \w+ shop\b", r"\balready does\b", r"\bwe'?re (?:on|with) \w+",
)
PRICE = _any(r"\btoo expensive\b", r"\bno budget\b", r"\bbudget (?:was|is|has been) (?:cut|frozen|spent|gone)\b",
             r"\bcan'?t (?:afford|justify)\b", r"\bout of our (?:price )?range\b", r"\bprice point\b",
             r"\bcost(?:s)? (?:is |are )?too high\b", r"\bbudget\b.{0,30}\bcut\b",
             r"\b(?:beyond|more than|over) (?:what )?(?:we|our) (?:can )?(?:spend|afford|budget)",
             r"\bcan'?t spend\b", r"\bpricey\b",
             r"\b(?:cost|price|pricing|budget) is (?:the|an|our) (?:issue|problem)\b")
AUTHORITY = _any(r"\bnot my (?:call|decision)\b", r"\brun (?:this|it) by\b", r"\bprocurement (?:decides|handles)\b",
                 r"\bdecision (?:is|sits|lies) with\b", r"\bneed (?:approval|sign-off)\b", r"\bmy boss\b",
                 r"\bdecision is made\b", r"\bnot (?:up to|decided by) me\b", r"\bnot by me\b",
                 r"\b(?:group|head office|headquarters|hq) (?:level|decides)\b",
                 r"\b(?:board|ceo|cfo|owner)'?s? (?:sign-?off|approval)\b", r"\bget (?:sign-?off|approval)\b")
NO_NEED = _any(r"\bin-?house\b", r"\bdon'?t (?:really )?(?:have|need) (?:that|this|the|another|a)\b",
               r"\bno need\b", r"\bwork(?:s)? fine for us\b", r"\ball set\b",
               r"\btoo small to need\b", r"\bdon'?t see (?:the|a) need\b", r"\bnot a problem (?:for|we)\b",
               r"\bnot relevant\b")
NOT_INTERESTED = _any(
    r"\bnot (?:really |at all )?interested\b", r"\bno (?:thank you|thanks)\b", r"\bno,? thanks\b",
    r"\bthanks,? but no\b", r"\bwe'?ll pass\b", r"\bhard pass\b", r"\b(?:isn'?t|is not|not) (?:for us|something we)\b",
    r"\bno interest\b", r"\bkein interesse\b", r"\bnot looking\b", r"\bthis is a no\b", r"\bpas intéressé",
    r"\bno me interesa\b", r"\bwe'?re (?:good|fine|ok|set)\b", r"\b(?:have to|must|will) decline\b",
    r"\bnope\b", r"\bno,? not\b", r"^\s*no\s*[.!]*\s*$", r"\bnot (?:going to|gonna) (?:move forward|proceed|pursue)\b",
    r"\bnot a (?:good )?fit\b",
)
DOUBLE_NEGATIVE_INTEREST = _any(r"\bnot un-?interested\b", r"\bnot disinterested\b")
INFO_REQUEST = _any(
    r"\bsend (?:me |over )?(?:some |more |any |the |a |whatever )?(?:info|information|details|deck|one-?pager|"
    r"case stud|material|numbers|pricing tiers)", r"\bshare the deck\b", r"\bforward me\b",
    r"\btell me more\b", r"\blearn (?:more|how)\b", r"\bhear more\b", r"\bsee some numbers\b",
    r"\bhow it works\b", r"\bwhat results\b", r"\bsend (?:the|that|some) info\b",
    r"\b(?:walkthrough|overview|brochure|video)\b.{0,30}\bsend\b", r"\bsend\b.{0,40}\b(?:walkthrough|overview|"
    r"brochure|video)\b", r"\bunderstand (?:the|your|how)\b", r"\bopen to (?:hearing|learning|it|a)\b",
)
INTEREST = _any(
    r"\binterest(?:ed|ing)\b", r"\bcurious\b", r"\bkeen\b", r"\bpromising\b", r"\bresonates\b", r"\bcould be a fit\b",
    r"\btimely\b", r"\byou have my attention\b", r"\bsomething we'?ve been looking at\b", r"\bstruggling with\b",
    r"\bme interesa\b", r"\binteressant\b", r"\bwould be great to learn\b", r"\bcould help\b",
    r"\bnot opposed\b", r"\bgood timing\b", r"\bdrowning\b", r"\bintrigued\b", r"\bmight (?:actually )?need\b",
)
PRODUCT_QUESTION = _any(
    r"\bhow much\b", r"\bpric(?:e|ing)\b", r"\bcost\b", r"\bintegrat", r"\bsupport\b", r"\bsoc ?2\b", r"\bsecurity\b",
    r"\bhosted\b", r"\bimplementation\b", r"\bfree trial\b", r"\bapi\b", r"\bdifferent from\b", r"\bhandle\b",
    r"\bmulti-?currency\b", r"\bwho else\b", r"\bdoes (?:it|this|your)\b", r"\bdo you (?:offer|have|integrate)",
    r"\bis (?:this|it|there)\b", r"\bcan (?:it|this|you)\b", r"\bwhat kind of\b", r"\bhow (?:long|does|is|do)\b",
    r"\bconnect\b", r"\berps?\b", r"\bcustomers?\b", r"\bper (?:user|seat|entity)\b", r"\bcompliance\b",
    r"\bcontract\b", r"\bexport\b", r"\byour (?:tool|product|platform|software|solution)\b", r"\bsso\b",
)
# questions about the sender or the message itself, not the offering
META_QUESTION = _any(
    r"\bwho (?:is this|are you)\b", r"\bwhich company\b", r"\bhow did you get\b", r"\bspam\b",
    r"\bresend\b", r"\bmean to send\b", r"\bwhere did you\b", r"\bwhat is this (?:regarding|about)\b",
)

_NAME = r"(?:[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_CONTACT_PATTERNS = [
    re.compile(r"\b(?:Frau|Herr|Mr\.?|Ms\.?|Mrs\.?)\s([A-Z][a-z]+)"),
    re.compile(rf"({_EMAIL})"),
    re.compile(rf"(?i:talk to|speak (?:to|with)|reach out to|contact|try|loop(?:ing)? in|cc'?(?:ing|d)|copying|"
               rf"forwarded (?:this|it)? ?to|successor,?|colleague|is|but|adding|send (?:this|it) to|, |"
               rf"Head of \w+,)\s"
               rf"(?:(?:my|our) [a-z ]{{2,30}}?,? )?({_NAME})\b"),
    re.compile(rf"\b({_NAME}),?\s(?:who|she|he|on our|in \w+|our|would be|runs|leads)\b"),
]
_STOP_NAMES = {"I", "I'm", "Please", "Best", "Thanks", "Our", "The", "This", "Wrong", "Head", "Contact", "Bitte",
               "Remove", "Looping", "Sorry", "Good", "Hi", "Hello", "Try", "It", "We", "You", "Not", "My", "CFO",
               "Elena, see"}


def referral_contact(text: str) -> str | None:
    for pattern in _CONTACT_PATTERNS:
        for match in pattern.finditer(text):
            name = match.group(1).strip()
            if name.split()[0] not in _STOP_NAMES and not name.startswith(("Head", "Finance")):
                return name
    return None


# --- return dates of out-of-office replies --------------------------------------------------------

_MONTHS = {
    **dict.fromkeys(["january", "jan", "januar", "janvier", "enero", "gennaio", "januari"], 1),
    **dict.fromkeys(["february", "feb", "februar", "février", "fevrier", "febrero", "febbraio", "februari"], 2),
    **dict.fromkeys(["march", "mar", "märz", "mars", "marzo", "maart"], 3),
    **dict.fromkeys(["april", "apr", "avril", "abril", "aprile"], 4),
    **dict.fromkeys(["may", "mai", "mayo", "maggio", "mei"], 5),
    **dict.fromkeys(["june", "jun", "juni", "juin", "junio", "giugno"], 6),
    **dict.fromkeys(["july", "jul", "juli", "juillet", "julio", "luglio"], 7),
    **dict.fromkeys(["august", "aug", "août", "aout", "agosto", "augustus"], 8),
    **dict.fromkeys(["september", "sep", "sept", "septembre", "septiembre", "settembre"], 9),
    **dict.fromkeys(["october", "oct", "oktober", "octobre", "octubre", "ottobre"], 10),
    **dict.fromkeys(["november", "nov", "novembre", "noviembre"], 11),
    **dict.fromkeys(["december", "dec", "dezember", "décembre", "decembre", "diciembre", "dicembre"], 12),
}
_MONTH = "(" + "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), "ymd"),
    (re.compile(r"\b(\d{1,2})[./](\d{1,2})[./](\d{4})\b"), "dmy"),
    (re.compile(rf"\b{_MONTH}\s(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s(\d{{4}}))?\b", re.IGNORECASE), "mdy"),
    (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th|\.)?\s(?:de\s)?{_MONTH}(?:\s(?:de\s)?(\d{{4}}))?", re.IGNORECASE), "dm"),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})\b"), "md"),
]


def _build(year: int | None, month: int, day: int, today: date) -> date | None:
    try:
        candidate = date(year or today.year, month, day)
    except ValueError:
        return None
    if year is None and candidate < today:
        candidate = candidate.replace(year=candidate.year + 1)
    return candidate


def return_date(text: str, today: date) -> date | None:
    """The first date in an out-of-office reply, read the way its language writes dates."""
    found: list[tuple[int, date]] = []
    for pattern, kind in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            if kind == "ymd":
                value = _build(int(g[0]), int(g[1]), int(g[2]), today)
            elif kind == "dmy":  # 14/12/2026 and 04.12.2026: day first outside the US
                day, month = (int(g[0]), int(g[1])) if int(g[0]) > 12 or "." in m.group(0) else (int(g[1]), int(g[0]))
                value = _build(int(g[2]), month, day, today)
            elif kind == "mdy":
                value = _build(int(g[2]) if g[2] else None, _MONTHS[g[0].lower()], int(g[1]), today)
            elif kind == "dm":
                value = _build(int(g[2]) if g[2] else None, _MONTHS[g[1].lower()], int(g[0]), today)
            else:
                value = _build(None, int(g[0]), int(g[1]), today)
            if value:
                found.append((m.start(), value))
        if found:
            break
    return min(found)[1] if found else None


# --- the classifier ------------------------------------------------------------------------------

@cache
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def _objection_type(text: str) -> str:
    for kind, pattern in (("competitor", COMPETITOR), ("price", PRICE), ("authority", AUTHORITY),
                          ("no_need", NO_NEED)):
        if pattern.search(text):
            return kind
    return "none"


def _category(text: str) -> tuple[str, float, str]:
    """(category, confidence, reason)."""
    if OUT_OF_OFFICE.search(text):
        return "out_of_office", 0.9, "out-of-office wording"
    if AUTOMATED.search(text):
        return "auto_reply", 0.85, "automated acknowledgement"
    contact = referral_contact(text)
    if contact and (REFERRAL_ROUTING.search(text) or WRONG_PERSON.search(text)):
        return "referral", 0.8, f"points to {contact}"
    if UNSUBSCRIBE.search(text):
        return "unsubscribe", 0.9, "asks to be removed"
    if WRONG_PERSON.search(text):
        return "wrong_person", 0.8, "says they are not the right contact"
    if DOUBLE_NEGATIVE_INTEREST.search(text):
        return ("meeting_request", 0.7, "double negative, asks to meet") if MEETING.search(text) else (
            "interested", 0.7, "double negative: interested")
    if NOT_NOW.search(text):
        return "not_now", 0.8, "asks to be contacted later"
    if MEETING.search(text) and not NOT_INTERESTED.search(text):
        return "meeting_request", 0.85, "scheduling language"
    if _objection_type(text) != "none":
        return "objection", 0.75, f"{_objection_type(text)} objection"
    if NOT_INTERESTED.search(text):
        return "not_interested", 0.85, "declines"
    if INFO_REQUEST.search(text):
        return "interested", 0.8, "asks for more"
    if "?" in text and PRODUCT_QUESTION.search(text) and not META_QUESTION.search(text):
        return "question", 0.75, "asks about the offering"
    if INTEREST.search(text):
        return "interested", 0.7, "interest wording"
    return "other", 0.4, "no rule matched"


_INTEREST_LEVEL = {"meeting_request": "high", "interested": "high", "question": "medium", "not_now": "low",
                   "referral": "low", "objection": "low", "other": "low"}
_SENTIMENT_BOUNDS = {"unsubscribe": (-1.0, -0.3), "not_interested": (-1.0, -0.2), "objection": (-1.0, 0.1),
                     "interested": (0.3, 1.0), "meeting_request": (0.4, 1.0), "out_of_office": (-0.1, 0.1),
                     "auto_reply": (-0.1, 0.1)}


def classify_offline(text: str, today: date) -> Classification:
    """Classify a reply without any network call."""
    clean = reply_text(text) or text.strip()
    category, confidence, reason = _category(clean)
    compound = float(_vader().polarity_scores(clean)["compound"])
    low, high = _SENTIMENT_BOUNDS.get(category, (-1.0, 1.0))
    sentiment = round(min(high, max(low, compound)), 3)
    objection = _objection_type(clean) if category == "objection" else ("timing" if category == "not_now" else "none")
    tentative = category == "interested" and compound < 0.2
    interest = "medium" if tentative else _INTEREST_LEVEL.get(category, "none")
    return Classification.model_validate({
        "category": category, "sentiment_score": sentiment, "interest_level": interest, "objection_type": objection,
        "referral_contact": referral_contact(clean) if category == "referral" else None,
        "return_date": return_date(clean, today) if category == "out_of_office" else None,
        "confidence": confidence, "reason": reason, "source": "fallback", "model": FALLBACK_MODEL,
    })
