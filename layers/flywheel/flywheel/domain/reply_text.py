"""The new text of a reply: what the lead wrote, without quoted history and signature.

Quote detection starts with mail-parser-reply (maintained, multi-language, no dependencies; it
knows the Outlook header blocks and the Gmail "On ... wrote:" line in most of our languages).
Our own rules then cover what it misses (measured in tests/unit/test_reply_text.py):
- Gmail/Apple attribution lines in Spanish, Portuguese, Dutch, Russian, Japanese and Chinese, and
  any line that ends with an address and a colon ("пн, 6 янв. 2025 г. в 10:00, Sam <…>:");
- Outlook header blocks (From/Sent/To/Subject) in Russian, Japanese and the other languages;
- separator lines, and `>`-quoted lines in between new text;
- signatures: the "-- " delimiter, "Sent from my iPhone" in every language we read, and a closing
  ("Best regards", "Mit freundlichen Grüßen", "С уважением", ...) followed by a few short lines
  that read as a signature, not as sentences;
- a corporate disclaimer at the end;
- history quoted line by line (`>`) with the lead's lines below or between the quotes.
The quoted history is never the reply: a reply with nothing of its own is empty.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from functools import cache
from typing import Any

LANGUAGES = ["en", "de", "fr", "es", "pt", "it", "nl", "ru", "ja", "zh"]

_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
# "On Mon, Jan 6, 2025 at 10:00 AM Sam <sam@x>" + "wrote:" and its translations
# (Apple Mail: "het volgende geschreven", "のメール"; Thunderbird in Russian: "пишет"; Gmail in Korean)
_WROTE = (
    r"wrote|a écrit|schrieb|escribió|ha scritto|schreef|geschreven|escreveu|skrev|написал[аи]?|пишет|"
    r"kirjoitti|napisał\(a\)|napisał[a]?|napsal\(a\)|napsal[a]?|şunu yazdı|yazdı|"
    r"写道|寫道|のメッセージ|のメール|님이 작성"
)
_ATTRIBUTION = [
    re.compile(
        rf"^\s*(?:on|le|am|el|il|op|em|den|på|в|il giorno)\b.{{0,220}}(?:{_WROTE})\b.{{0,80}}[:：]\s*$", re.IGNORECASE
    ),
    # "Sam Lee wrote:", or any line with a date or an address before the verb; not "what one CFO
    # wrote:" in the middle of a message
    re.compile(rf"^\s*(?:[A-ZÀ-ÖØ-ÞА-ЯЁ][\w.'’-]*\s+){{1,4}}(?:{_WROTE})\s*[:：]\s*$"),
    re.compile(rf"^.{{0,200}}[\d@].{{0,200}}(?:{_WROTE})\s*[:：]\s*$", re.IGNORECASE),
    # Gmail in Russian/Japanese, Yandex, Mail.ru: a date and an address, then a colon
    re.compile(rf"^.{{0,160}}<{_EMAIL}>\)?\s*[:：]\s*$"),
    re.compile(rf"^.{{0,120}}\b{_EMAIL}\s*[:：]\s*$"),
]
_SEPARATORS = [
    re.compile(
        r"^\s*-{2,}\s*(?:original message|forwarded message|ursprüngliche nachricht|message d'origine|"
        r"mensaje original|mensagem original|messaggio originale|oorspronkelijk bericht|"
        r"исходное сообщение|пересылаемое сообщение|元のメッセージ|原始邮件|weitergeleitete nachricht|"
        r"message transféré|mensaje reenviado|messaggio inoltrato)\s*-{2,}",
        re.IGNORECASE,
    ),
    re.compile(
        r"^\s*(?:begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié)\s*:",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*_{10,}\s*$"),
    re.compile(r"^\s*-{5,}\s*$"),
]
# any of them, in one match a line (each keeps its own flags)
_QUOTE_START = re.compile(
    "|".join(f"(?{'i' if p.flags & re.IGNORECASE else ''}:{p.pattern})" for p in _ATTRIBUTION + _SEPARATORS)
)
# the first line of an Outlook header block, and the lines that must follow it
_HEADER_FROM = re.compile(
    r"^\s*\*?(?:from|von|de|van|da|от|från|od|fra|kimden|差出人|发件人|寄件者|보낸 사람)\s*\*?\s*[:：]\s*\S",
    re.IGNORECASE,
)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(?:sent|date|to|subject|cc|gesendet|datum|an|betreff|envoyé|date|à|objet|enviado|fecha|para|asunto|"
    r"data|assunto|inviato|oggetto|verzonden|aan|onderwerp|отправлено|дата|кому|тема|送信日時|宛先|件名|"
    r"发送时间|收件人|主题|日期|寄件日期|傳送時間|收件者|主旨|副本|보낸 날짜|받는 사람|제목|"
    # Swedish, Polish, Danish/Norwegian, Czech, Turkish Outlook
    r"skickat|till|ämne|kopia|wysłano|do|temat|dw|sendt|til|emne|odesláno|komu|předmět|kime|konu|tarih|"
    r"gönderildi|bilgi)\s*\*?\s*[:：]",
    re.IGNORECASE,
)
_MOBILE = re.compile(
    r"^\s*(?:sent from my\b.{0,40}|sent from (?:mail|outlook|yahoo mail|gmail)\b.*|get outlook for (?:ios|android)\b.*|"
    # Outlook mobile's footer in every language carries its link; Spark; Dutch iOS
    r".{0,40}\boutlook\b.{0,30}<?https?://aka\.ms/\w+>?.{0,30}|sent with spark|"
    r"verstuurd (?:vanaf|met|via) (?:mijn )?\w+|"
    r"von meinem .{1,40} gesendet|gesendet von meinem .{1,40}|envoyé de mon .{1,40}|enviado desde mi .{1,40}|"
    r"enviado do meu .{1,40}|"
    r"inviato da(?:l mio)? \w+|verzonden (?:vanaf|met) (?:mijn )?\w+|отправлено с (?:моего )?\w+|"
    r"\w+から送信|发自我的\w+|從我的 ?\w+傳送|"
    r"skickat från min .{1,40}|sendt fra min .{1,40}|wysłan[eo] z (?:mojego )?.{1,40}|odesláno z (?:mého )?.{1,40}|"
    r".{1,40}['’]?(?:u|ü|i|ı)mdan gönderildi|나의 .{1,40}에서 보냄)\s*$",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"^\s*(?:best|best regards|kind regards|warm regards|regards|many thanks|thanks|thank you|cheers|all the best|"
    r"talk soon|"
    r"sincerely|yours sincerely|br|mit freundlichen grüßen|mit freundlichen grüssen|freundliche grüße|viele grüße|"
    r"beste grüße|liebe grüße|gruß|grüße|cordialement|bien cordialement|bien à vous|salutations|saludos|"
    r"un saludo|saludos cordiales|atentamente|atenciosamente|cumprimentos|abraços|cordiali saluti|saluti|"
    r"distinti saluti|met vriendelijke groet|vriendelijke groet|groeten|met groet|с уважением|спасибо|"
    r"всего доброго|よろしくお願いいたします|敬具|以上|此致|祝好|谢谢|"
    r"med vänliga hälsningar|vänliga hälsningar|hälsningar|mvh|pozdrawiam|pozdrawiam serdecznie|z poważaniem|"
    r"saygılarımla|iyi çalışmalar|teşekkürler|감사합니다)\s*[,.!]?\s*$",
    re.IGNORECASE,
)
_SIGNATURE_MAX_LINES = 6
_PARSER_MAX_CHARS, _PARSER_MAX_LINE = 20_000, 1_000
# Gmail's plain-text stand-in for an inline image
_IMAGE_PLACEHOLDER = re.compile(r"^\s*\[image: [^\]]{0,200}\]\s*$")


@cache
def _parser() -> Any:
    """`EmailReplyParser(languages=LANGUAGES).parse_reply`, without the signature and disclaimer
    searches it runs on every part: `latest_reply` is the first part's content, which they never
    change, and they cost most of a parse (two large patterns over the whole text)."""
    from mailparser_reply import EmailReplyParser
    from mailparser_reply.parser import EmailMessage

    class _Parts(EmailMessage):  # type: ignore[misc]
        def _process_signatures_disclaimers(self, text: str) -> tuple[list[str], str]:
            return [], ""

    languages = EmailReplyParser(languages=LANGUAGES).languages

    def parse(text: str) -> str | None:
        message = _Parts(text=text, languages=languages)  # its constructor normalises the text
        normal = message.text
        if ("-----" in normal or ":" in normal or "：" in normal) and _HEADER_CUE.search(normal):
            return message.read().latest_reply  # type: ignore[no-any-return]
        return normal.strip()  # no header can match: the whole text is the reply

    return parse


# Every alternative of the parser's header pattern (its "wrote:" lines in every language, its
# From/Sent/To header lines, "-----Original Message-----") needs a line ending in a colon, a line
# whose first word (after `>`, `*` and spaces) is followed by a colon, or five dashes; a text
# without any of these cannot match it, and the parser then answers the whole (normalised) text.
# Most outbound bodies have none, and the header pattern costs ~0.4 ms over one.
# tests/unit/test_reply_parser_fast_path.py holds the two answers equal.
_HEADER_CUE = re.compile(r"[:：][^\S\n]*$|^[^\S\n]*[>* ]*(?:\w{1,24}[^\S\n]?)?[:：]|-{5,}", re.MULTILINE)


_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)([^<>]*)>")
_CLASS = re.compile(r"""\bclass\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
# elements whose content is not the reply: markup, and quoted history (blockquote, Gmail's quote)
_HTML_HIDDEN = frozenset({"head", "title", "script", "style", "blockquote", "template"})
_HTML_HIDDEN_CLASSES = frozenset({"gmail_quote", "gmail_signature"})
_HTML_BREAK = frozenset({"br", "p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre"})
_HTML_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"})


def html_to_text(markup: str) -> str:
    """The readable text of an HTML-only reply: no head, title, script or style, no quoted history
    (`blockquote`, Gmail's `gmail_quote`) and no marked signature; a line break per block element.

    One linear pass with `str.find` (a regular expression over the whole document, or the
    standard library's HTMLParser, takes minutes on a few hundred kilobytes of unclosed tags)."""
    parts: list[str] = []
    open_elements: list[tuple[str, bool]] = []  # (name, whether it hides its content)
    open_names: Counter[str] = Counter()
    hidden, pos, size = 0, 0, len(markup)
    while pos < size:
        start = markup.find("<", pos)
        if start < 0:
            start = size
        if not hidden:
            parts.append(markup[pos:start])
        if start >= size:
            break
        if markup.startswith(("<!--", "<!", "<?"), start):  # comments, doctype, conditional comments
            close = "-->" if markup.startswith("<!--", start) else ">"
            end = markup.find(close, start + 2)
            pos = size if end < 0 else end + len(close)
            continue
        tag = _TAG.match(markup, start)
        if tag is None:  # a bare "<" is text
            if not hidden:
                parts.append("<")
            pos = start + 1
            continue
        pos = tag.end()
        closing, name = tag.group(1) == "/", tag.group(2).lower()
        if name in _HTML_BREAK:
            parts.append("\n")
        if name in _HTML_VOID or tag.group(3).rstrip().endswith("/"):
            continue
        if closing:  # closes the innermost open element of that name and those left open inside it
            while open_names[name]:
                open_name, hid = open_elements.pop()
                open_names[open_name] -= 1
                hidden -= hid
                if open_name == name:
                    break
            continue
        found = _CLASS.search(tag.group(3))
        classes = set(next(g for g in found.groups() if g is not None).split()) if found else set()
        hides = name in _HTML_HIDDEN or not _HTML_HIDDEN_CLASSES.isdisjoint(classes)
        open_elements.append((name, hides))
        open_names[name] += 1
        hidden += hides
    text = html.unescape("".join(parts)).replace("\xa0", " ")
    lines = "\n".join(" ".join(line.split()) for line in normalise_newlines(text).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", lines).strip()


def normalise_newlines(text: str) -> str:
    """CRLF (raw MIME) and lone CR become LF, so both Inbound Parse modes store the same text."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_header_block(lines: list[str], i: int) -> bool:
    if not _HEADER_FROM.match(lines[i]):
        return False
    following = [line for line in lines[i + 1 : i + 5] if line.strip()]
    return sum(1 for line in following[:3] if _HEADER_NEXT.match(line)) >= 2


def _quote_start(lines: list[str], i: int) -> int:
    """How many lines the first line of quoted history at `i` takes (an attribution line, a
    separator, an Outlook header block; two for an attribution wrapped over two lines); 0 if none."""
    line = lines[i]
    # every attribution, header line and image placeholder holds a colon, and every separator
    # "--" or "__": a line with none of them (most lines) skips those patterns
    colon = ":" in line or "：" in line
    if (colon or "--" in line or "__" in line) and (_QUOTE_START.match(line) or (colon and _is_header_block(lines, i))):
        return 1
    if not line.rstrip().endswith((".", "!", "?")):
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if (colon or ":" in following or "：" in following) and _ATTRIBUTION[0].match(line + " " + following):
            return 2
    return 0


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _is_image_placeholder(line: str) -> bool:
    return (":" in line) and bool(_IMAGE_PLACEHOLDER.match(line))


def _cut_quotes(lines: list[str]) -> list[str]:
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _quote_start(lines, i):
            break
        if _is_quoted(line) or _is_image_placeholder(line):
            continue
        kept.append(line)
    return kept


def _next_content(lines: list[str], start: int) -> int | None:
    return next((j for j in range(start, len(lines)) if lines[j].strip()), None)


# a quoted line this long may have been wrapped by the client, its tail left without its ">"
_WRAPPED_QUOTE = 60


def _below_marked_quotes(lines: list[str], start: int) -> list[str]:
    """The lead's own lines from `start` on, where the quoted history is marked line by line
    (bottom-posting, inline answers): `>` lines and the attribution lines that introduce them
    are dropped, the lines between and after them kept, up to quoted history that is not
    marked (an Outlook header block, a separator, an attribution with unquoted text below):
    everything from there on is history."""
    kept: list[str] = []
    i, size = start, len(lines)
    while i < size:
        line = lines[i]
        if _is_quoted(line) or _is_image_placeholder(line):
            i += 1
            continue
        taken = _quote_start(lines, i)
        if taken:
            following = _next_content(lines, i + taken)
            if following is None or not _is_quoted(lines[following]):
                break
            i += taken  # the attribution of a marked quote
            continue
        previous = lines[i - 1] if i else ""
        if line.strip() and _is_quoted(previous) and len(previous.lstrip(" >")) >= _WRAPPED_QUOTE:
            # a run of lines wedged between two quoted lines, without a blank line on either
            # side, under a long quoted line: the tail of a quoted line the client wrapped
            end = i
            while end < size and lines[end].strip() and not _is_quoted(lines[end]):
                end += 1
            if end < size and _is_quoted(lines[end]):
                i = end
                continue
        kept.append(line)
        i += 1
    return kept


def _marked_history(lines: list[str]) -> int | None:
    """Where the quoted history starts when it is marked line by line (`>` quoting) and the lead
    wrote below it; None when the lead wrote above it only, or the history is unmarked."""
    for i, line in enumerate(lines):
        if not _is_quoted(line):
            taken = _quote_start(lines, i)
            if not taken:
                continue
            following = _next_content(lines, i + taken)
            if following is None or not _is_quoted(lines[following]):
                return None  # an Outlook block, a separator: everything below is history
        below = _below_marked_quotes(lines, i)
        return i if any(line.strip() for line in below) else None
    return None


def _strip_history(normalised: str) -> str:
    first_pass = normalised
    # mail-parser-reply's header patterns backtrack polynomially on long lines (60 KB of "On On On"
    # take minutes): it reads bounded text only, our own rules below read everything
    if len(normalised) <= _PARSER_MAX_CHARS and max(map(len, normalised.split("\n"))) <= _PARSER_MAX_LINE:
        try:
            first_pass = _parser()(normalised)
        except Exception:  # noqa: BLE001 - a third-party parser must never lose a reply; our rules still run
            first_pass = normalised
    lines = _cut_quotes(normalise_newlines(first_pass or normalised).split("\n"))
    return "\n".join(line.rstrip() for line in lines).strip()


def strip_quotes(text: str) -> str:
    """The text without its quoted history (attribution lines, header blocks, `>` quotes); the
    signature stays. Newlines normalised.

    When the history is marked line by line and the lead wrote below or between the quoted
    lines (bottom-posting, Thunderbird's default; inline answers), those lines are the reply too."""
    normalised = normalise_newlines(text)
    lines = normalised.split("\n")
    start = _marked_history(lines)
    if start is None:
        return _strip_history(normalised)
    above = _strip_history("\n".join(lines[:start]))
    kept = _below_marked_quotes(lines, start)
    below = _strip_history(re.sub(r"\n{3,}", "\n\n", "\n".join(kept)))
    # a paragraph break between them where the lead left one
    apart = not lines[start - 1].strip() if start else True
    apart = apart or not kept[0].strip()
    return ("\n\n" if apart else "\n").join(part for part in (above, below) if part)


# corporate disclaimers: the confidentiality / "received this in error" / "intended recipient"
# families, in the languages we read
_DISCLAIMER = re.compile(
    r"received this (?:e-?mail|message|communication|transmission)(?: \w+){0,3} (?:in error|by mistake)|"
    r"not the intended recipient|intended (?:only |solely |exclusively )?for the (?:use of the )?"
    r"(?:addressee|intended recipient|named recipient|individual|person|recipient)|"
    r"(?:confidentiality|legal) (?:notice|disclaimer)|\bdisclaimer\s*:|"
    r"(?:e-?mail|message)(?: and any (?:attachments|files)[^.]{0,40})? (?:is|are|may be|may contain|contains?) "
    r"(?:strictly )?(?:confidential|privileged)|"
    r"irrtümlich erhalten|nicht der (?:richtige|beabsichtigte|vorgesehene) (?:adressat|empfänger)|"
    r"ausschließlich für den (?:adressaten|empfänger)|vertrauliche informationen|vertraulichkeitshinweis|"
    r"reçu ce (?:message|courriel|e-?mail) par erreur|n'êtes pas (?:le )?destinataire|"
    r"(?:message|courriel)[^.]{0,60} (?:est |sont )?(?:strictement )?confidentiel|"
    r"recibido este (?:mensaje|correo)[^.]{0,30} por error|no (?:es|sea) (?:usted )?el destinatario|"
    r"(?:mensaje|correo)[^.]{0,60} (?:es |son |contiene )?(?:información )?confidencial|"
    r"recebeu esta (?:mensagem|e-?mail)[^.]{0,30} por (?:engano|erro)|não (?:é|for) o destinatário|"
    r"(?:mensagem|e-?mail)[^.]{0,60} (?:é |pode conter )?(?:informaç(?:ão|ões) )?confidencia|"
    r"ricevuto questo (?:messaggio|e-?mail)[^.]{0,30} per errore|non (?:è|siete|sia) (?:il )?destinatario|"
    r"(?:messaggio|e-?mail)[^.]{0,60} (?:è |sono |contiene )?(?:informazioni )?riservat|"
    r"(?:dit bericht|deze e-?mail)[^.]{0,60} (?:ten onrechte|per abuis|onterecht)|"
    r"uitsluitend bestemd voor de geadresseerde|vertrouwelijk|"
    r"получили это (?:сообщение|письмо) по ошибке|не являетесь (?:его )?(?:адресатом|получателем)|"
    r"(?:сообщение|письмо)[^.]{0,60} конфиденциальн|"
    r"誤って|誤送信|機密情報|秘密情報|误收|保密|如果您不是|機密|"
    r"mottagit (?:detta|det här) (?:e-?postmeddelande|meddelande|mejl) av misstag|konfidentiell|"
    r"otrzymał(?:a|\(a\))? (?:tę|tą) wiadomość (?:przez pomyłkę|omyłkowo)|poufn|"
    r"yanlışlıkla (?:size )?ulaştıysa|gizli (?:bilgi|olup)",
    re.IGNORECASE,
)
_DISCLAIMER_MIN_CHARS = 60
_SIGNATURE_LINE_CHARS = 60


def _is_disclaimer(text: str) -> bool:
    # two of its phrases: "I'm not the intended recipient of this, try Bob" is the lead's answer
    found = {match.group(0).lower() for match in _DISCLAIMER.finditer(text)}
    return len(text) >= _DISCLAIMER_MIN_CHARS and len(found) >= 2


def _cut_disclaimer(lines: list[str]) -> list[str]:
    """Without the disclaimer paragraphs at the end: from the paragraph's first line that is long or
    holds a disclaimer phrase (the short lines above it are the signature), when the rest of the
    paragraph reads as one and the lead wrote something before it."""
    while True:
        end = len(lines)
        while end and not lines[end - 1].strip():
            end -= 1
        start = end
        while start and lines[start - 1].strip():
            start -= 1
        begin = next(
            (
                i
                for i in range(start, end)
                if len(lines[i].strip()) >= _SIGNATURE_LINE_CHARS or _DISCLAIMER.search(lines[i])
            ),
            None,
        )
        if begin is None or not any(line.strip() for line in lines[:begin]):
            return lines
        if not _is_disclaimer(" ".join(line.strip() for line in lines[begin:end])):
            return lines
        lines = lines[:begin]


_SENTENCE_END = (".", "!", "?", "。", "！", "？")
_ABBREVIATION = re.compile(r"\b(?:inc|ltd|co|corp|llc|gmbh|plc|jr|sr|dr|st)\.$", re.IGNORECASE)


def _is_sentence(line: str) -> bool:
    """Whether a line reads as a sentence of the message rather than a signature line (a name,
    a title, a company, a phone number): a question, or words in lower case ending in a full stop."""
    text = line.strip()
    if "?" in text or "？" in text:
        return True
    lower = sum(1 for word in text.split() if word[:1].islower())
    if text.endswith(_SENTENCE_END) and not _ABBREVIATION.search(text):
        return lower >= 2 or (len(text) >= 6 and not any(ch.isascii() and ch.isalpha() for ch in text))
    return lower >= 3


def _cut_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if line.rstrip() == "--" or line == "-- " or _MOBILE.match(line):
            return lines[:i]
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i in content[-(_SIGNATURE_MAX_LINES + 1) :]:
        rest = [line for line in lines[i + 1 :] if line.strip()]
        # "Thanks!" followed by "Let's talk Tuesday." is the message, not its sign-off
        if (
            _CLOSING.match(lines[i])
            and any(lines[j].strip() for j in range(i))
            and len(rest) <= _SIGNATURE_MAX_LINES
            and all(len(line) <= _SIGNATURE_LINE_CHARS and not _is_sentence(line) for line in rest)
        ):
            return lines[:i]
    return lines


def reply_text(text: str) -> str:
    """The new text of a reply: quoted history, quoted lines, a closing disclaimer and the
    signature are cut off. Empty when the lead wrote nothing of their own (an attachment or a
    "Sent from my iPhone" above the quote): the quoted history is never the reply.

    A stable, pure function (the dataset builder uses the same rules on outbound bodies)."""
    lines = _cut_signature(_cut_disclaimer(strip_quotes(text).split("\n")))
    return "\n".join(lines).strip()


# strip_signature: the RFC 3676 delimiter or an underscore rule starts a signature
_SIGNATURE_DELIMITER = re.compile(r"^--\s*$|^__+\s*$")


def is_closing_line(line: str) -> bool:
    """A sign-off such as "Best," or "Mit freundlichen Grüßen" on a line of its own."""
    return bool(_CLOSING.match(line))


def strip_signature(text: str, known_signature: str | None = None) -> tuple[str, bool]:
    """The text without its trailing signature block, and whether one was cut.

    A signature starts at a `-- ` delimiter line, at the sender's registered signature, or after
    a closing line ("Best,", "Mit freundlichen Grüßen") followed by at most six short lines; the
    closing line itself is kept. Mobile footers ("Sent from my iPhone") are dropped too."""
    lines = text.replace("\r\n", "\n").rstrip().split("\n")
    while lines and _MOBILE.match(lines[-1]):
        lines.pop()
    cut: int | None = None
    for i, line in enumerate(lines):
        if _SIGNATURE_DELIMITER.match(line):
            cut = i
            break
    if cut is None and known_signature and known_signature.strip():
        first = next((ln.strip() for ln in known_signature.splitlines() if ln.strip() and not _CLOSING.match(ln)), "")
        for i in range(len(lines) - 1, -1, -1):
            if first and lines[i].strip() == first:
                cut = i
                break
    if cut is None:
        for i in range(max(0, len(lines) - 8), len(lines)):
            tail = lines[i + 1 :]
            if _CLOSING.match(lines[i]) and 0 < len(tail) <= 6 and all(len(t.strip()) <= 80 for t in tail):
                cut = i + 1
                break
    if cut is None:
        return "\n".join(lines).strip(), False
    return "\n".join(lines[:cut]).rstrip(), True
