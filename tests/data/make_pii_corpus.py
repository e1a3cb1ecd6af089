"""Writes tests/data/pii_planted.jsonl: personal data planted in realistic sales-email sentences,
one item per planted value, across detectors, countries and scripts. Each item names the
detector meant to catch it, the context the build would know (lead, sender, colleagues,
regions), the text, and the planted strings that must not survive redaction.

Run `python tests/data/make_pii_corpus.py` after changing it; the JSONL is the fixture."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("pii_planted.jsonl")

LEADS = [  # (first, last, company, country)
    ("Dana", "Reyes", "Northwind Traders Inc.", "US"),
    ("Jonas", "Müller", "Müller & Söhne AG", "DE"),
    ("Amélie", "Dubois", "Dubois Logistique SAS", "FR"),
    ("José", "Martínez", "Martínez y Asociados S.L.", "ES"),
    ("Giulia", "Rossi", "Rossi Meccanica S.p.A.", "IT"),
    ("Sanne", "de Vries", "De Vries Bouw B.V.", "NL"),
    ("João", "Silva", "Silva Transportes Ltda", "BR"),
    ("Priya", "Sharma", "Sharma Textiles Pvt Ltd", "IN"),
    ("太郎", "山田", "株式会社山田製作所", "JP"),
    ("伟", "王", "华星科技有限公司", "CN"),
    ("Ольга", "Иванова", "ООО Ромашка", "RU"),
    ("Björn", "Lindqvist", "Lindqvist Byggnads AB", "SE"),
    ("Siobhan", "O'Brien", "O'Brien & Partners Ltd", "IE"),
    ("Mei Ling", "Tan", "Tan Holdings Pte. Ltd.", "SG"),
    ("Chloe", "Nguyen", "Harbour Analytics Pty Ltd", "AU"),
    ("Liam", "Kowalski", "Maple Freight Corp.", "CA"),
]
SENDER = {
    "name": "Sam Lee",
    "title": "Senior Account Executive",
    "company": "Acme Robotics GmbH",
    "signature": "Best,\nSam Lee\nSenior Account Executive | Acme Robotics\nhttps://acme-robotics.example",
    "country": "GB",
}

PHONES = {  # region -> numbers written the way people there write them
    "US": ["+1 415 555 0132", "(415) 555-0132", "415.555.0132", "4155550132", "+14155550132", "415-555-0132"],
    "GB": ["+44 20 7946 0958", "020 7946 0958", "+44 7700 900123", "07700 900123", "+447700900123"],
    "DE": ["+49 30 901820", "030 901820", "030/901820", "+49 (0)30 901820", "0171 2345678", "+49 171 2345678"],
    "FR": ["+33 1 42 68 53 00", "01 42 68 53 00", "06 12 34 56 78", "+33 6 12 34 56 78"],
    "ES": ["+34 912 345 678", "912 34 56 78", "612 34 56 78"],
    "IT": ["+39 06 1234 5678", "06 1234 5678", "347 123 4567"],
    "NL": ["+31 20 123 4567", "020-1234567", "06-12345678"],
    "BR": ["+55 11 91234-5678", "(11) 91234-5678"],
    "IN": ["+91 98765 43210", "098765 43210", "98765 43210"],
    "JP": ["+81 3-1234-5678", "03-1234-5678", "090-1234-5678"],
    "CN": ["+86 10 1234 5678", "010-12345678", "138 0013 8000"],
    "RU": ["+7 495 123-45-67", "8 (495) 123-45-67"],
    "SE": ["+46 8 123 456 78", "08-123 456 78"],
    "AU": ["+61 4 1234 5678", "0412 345 678", "(02) 9876 5432"],
    "IE": ["+353 1 234 5678", "01 234 5678"],
    "SG": ["+65 6123 4567"],
    "CA": ["+1 604 555 0199", "(604) 555-0199"],
}
PHONE_SENTENCES = [
    "Call me on {x} if that is easier.",
    "My direct line is {x}.",
    "Reach me at {x} any time this week.",
    "Ring {x} and ask for the team.",
    "WhatsApp: {x}",
    "Tel. {x} (mobile)",
]
REGIONLESS_PHONES = [
    "+44 7700 900123",
    "+49 30 901820",
    "+91 98765 43210",
    "+33 1 42 68 53 00",
    "+61 4 1234 5678",
    "+1 415 555 0132",
    "+81 90 1234 5678",
    "415 555 0132",
    "(415) 555-0132",
    "0412 345 678",
]

LINKS = [
    ("calendly.com/sam-lee/30min", "booking"),
    ("https://calendly.com/sam-lee/intro?month=2026-11", "booking"),
    ("calendar.app.google/AbC123xYz", "booking"),
    ("https://cal.com/sam/15min", "booking"),
    ("https://meetings.hubspot.com/sam-lee", "booking"),
    ("meetings-eu1.hubspot.com/dana-reyes/discovery", "booking"),
    ("https://savvycal.com/samlee/chat", "booking"),
    ("https://outlook.office365.com/owa/calendar/Acme@acme.example/bookings/", "booking"),
    ("https://zoom.us/j/98765432101?pwd=abc", "booking"),
    ("https://meet.google.com/abc-defg-hij", "booking"),
    ("linkedin.com/in/jdoe", "profile"),
    ("https://www.linkedin.com/in/dana-reyes-4b2a1", "profile"),
    ("https://twitter.com/danareyes", "profile"),
    ("https://x.com/jonas_mueller", "profile"),
    ("github.com/amelie-dubois", "profile"),
    ("https://wa.me/14155550132", "profile"),
    ("https://acme.example/case-study?utm_content=7d1c9a&utm_campaign=abm-northwind", "link"),
    ("https://click.sendgrid.example/ls/click?upn=Zm9vYmFyYmF6cXV4", "link"),
    ("www.northwind-traders.com/team/dana", "link"),
    ("northwind.example/pricing", "link"),
    ("acme-robotics.example/demo?lead=dana.reyes", "link"),
    ("http://bit.ly/3xYzAbC", "link"),
    ("https://drive.google.com/file/d/1AbCdEfGhIjKlMnOp/view", "link"),
    ("acme.io", "link"),
    ("https://docs.acme.example/share/8f14e45fceea167a5a36dedd4bea2543", "link"),
]
LINK_SENTENCES = [
    "Grab a slot here: {x}",
    "More at {x}.",
    "Book time with me ({x}) whenever suits.",
    "See {x}",
    "Here is the deck: {x} - let me know what you think.",
]

EMAILS = [
    "dana.reyes@northwind.example",
    "jonas.mueller@mueller-soehne.de",
    "jane at acme dot com",
    "jane(at)acme(dot)com",
    "jane [at] acme [dot] co [dot] uk",
    "priya.sharma AT sharmatextiles DOT in",
    "amelie {at} dubois-logistique {dot} fr",
    "j.martinez @ martinez-asociados . es",
    "mailto:sam@acme-robotics.example",
    "giulia.rossi+sales@rossi-meccanica.it",
    "o.ivanova@romashka.ru",
    "tan.meiling@tanholdings.com.sg",
    "yamada@yamada-ss.co.jp",
    "sanne <at> devriesbouw <dot> nl",
    "bjorn.lindqvist@lindqvist.se",
]
EMAIL_SENTENCES = ["Write to {x} with questions.", "You can also email {x}.", "(contact: {x})", "cc {x}"]

ADDRESSES = [
    ("US", "1600 Amphitheatre Parkway, Mountain View, CA 94043"),
    ("US", "350 Fifth Avenue, Suite 4100, New York, NY 10118"),
    ("GB", "221B Baker Street, London NW1 6XE"),
    ("GB", "1 Canada Square, London E14 5AB"),
    ("DE", "Friedrichstraße 123, 10117 Berlin"),
    ("DE", "Musterstr. 5a, 80331 München"),
    ("DE", "Unter den Linden 77, 10117 Berlin"),
    ("DE", "Am Sandtorkai 50, 20457 Hamburg"),
    ("FR", "12 rue de la Paix, 75002 Paris"),
    ("FR", "8 avenue Foch, 69006 Lyon"),
    ("ES", "Calle Mayor 5, 28013 Madrid"),
    ("IT", "Via Roma 10, 00184 Roma"),
    ("NL", "Keizersgracht 123, 1015 CJ Amsterdam"),
    ("PT", "Rua Augusta, 274, 1100-053 Lisboa"),
    ("BR", "Avenida Paulista 1578, São Paulo, 01310-200"),
    ("SE", "Drottninggatan 5, 111 51 Stockholm"),
    ("CH", "Bahnhofstrasse 45, 8001 Zürich"),
    ("AT", "Kärntner Straße 12, A-1010 Wien"),
    ("JP", "〒100-0005 東京都千代田区丸の内1-1-1"),
    ("CN", "北京市朝阳区建国路88号"),
    ("RU", "ул. Тверская, д. 7, Москва"),
    ("AU", "Level 5, 100 George Street, Sydney NSW 2000"),
    ("CA", "100 King Street West, Toronto, ON M5X 1A9"),
    ("IN", "12 MG Road, Bengaluru, PIN 560001"),
    ("IE", "25 Grafton Street, Dublin 2"),
    ("US", "PO Box 4432, Austin, TX 78765"),
]
ADDRESS_SENTENCES = [
    "Our office is at {x}.",
    "Drop by {x} next time you are in town.",
    "Visit us: {x}",
    "The workshop will be held at {x}.",
]

# card numbers (test numbers of each network, Luhn-valid), IBANs (the registry's examples) and
# secrets (the issuers' documented formats, with made-up values)
CARDS = [
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5555555555554444",
    "3782 822463 10005",
    "6011 1111 1111 1117",
    "2223 0031 2200 3222",
    "3566 0020 2036 0505",
    "4222222222222",
]
CARD_SENTENCES = ["Paid with card {x} last week.", "Card number: {x}, exp 12/27", "please charge {x} for the pilot"]
IBANS = [
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91ABNA0417164300",
    "ES91 2100 0418 4502 0005 1332",
    "CH93 0076 2011 6238 5295 7",
    "IT60 X054 2811 1010 0000 0123 456",
    "BE68 5390 0754 7034",
]
IBAN_SENTENCES = ["Bitte überweisen an {x}.", "IBAN: {x} (BIC on the invoice)", "Our account is {x}, thanks"]
SECRETS = [
    "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
    "sk-ant-api03-Zx8vQ2mN7bL4kJ9hG3fD5sA1pO6iU0yT",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_51H8abcdefghijklmnopqrstuv",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
]
SECRET_SENTENCES = ["their sandbox key {x}", "Use this token: {x}", "(we shared {x} by mistake)"]
LABELLED_SECRETS = [
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "API key: 9aF3kL0pQ7xZ2mN8vB4c",
    "password is Xq7!Lm2#Rt9$Vb4Wk8Zp",
]
# what the outside review of the dataset found leaking, by the detector meant to catch it
LATER = [
    ("phone", "US", "Call me on 415–555–0132 any time.", "415–555–0132"),
    ("phone", "DE", "Mobil: 0049‑170‑1234567", "0049‑170‑1234567"),
    ("phone", "GB", "her direct line is 020−7946−0958", "020−7946−0958"),
    ("phone", "GB", "Tel. +44 20 7946–0958 (office)", "+44 20 7946–0958"),
    (
        "email",
        "any",
        "Or write to peter.schmidt [at] bigcorp [dot] vn directly.",
        "peter.schmidt [at] bigcorp [dot] vn",
    ),
    (
        "email",
        "any",
        "Mail peter.schmidt (at) bigcorp (dot) photography today",
        "peter.schmidt (at) bigcorp (dot) photography",
    ),
    ("email", "any", "My assistant is maria.gonzalez&#64;iberiatex.es if easier.", "maria.gonzalez&#64;iberiatex.es"),
    ("email", "any", "cc: kwame.boateng%40accra-agro.com", "kwame.boateng%40accra-agro.com"),
    ("email", "any", "Write to erik dot lindqvist at nordicpaper dot se please.", "erik dot lindqvist"),
    ("email", "any", "Or peter . schmidt @ bigcorp . de works too", "peter . schmidt"),
    ("link", "any", "You can see my work at peterschmidt.dev.", "peterschmidt.dev"),
    ("link", "any", "Our distributor's site is somchai-trading.co.th", "somchai-trading.co.th"),
]

# what an outside re-review found leaking (several planted pieces: the local part of an address,
# the tail of a wrapped key, must go too)
REREVIEW = [
    ("email", "any", "Reply to lena.vogt&#64nordlicht.de please.", ["lena.vogt&#64nordlicht.de", "lena.vogt"]),
    ("email", "any", "cc lena.vogt%2540nordlicht.de", ["lena.vogt%2540nordlicht.de", "lena.vogt"]),
    ("email", "any", "or lena.vogt%40nordlicht%2Ede", ["lena.vogt%40nordlicht%2Ede", "lena.vogt"]),
    ("email", "any", "メールは kenji.sato@sato-shoji。co。jp まで", ["kenji.sato@sato-shoji。co。jp", "kenji.sato"]),
    ("secret", "any", "the key: _sk-proj-8Hq2Lm9Xw4Rt7Yp3Zk6Bv1Nc_ (prod)", ["sk-proj-8Hq2Lm9Xw4Rt7Yp3Zk6Bv1Nc"]),
    (
        "secret",
        "any",
        "token: **ghp_Zx8Qw2Er5Ty7Ui9Op1As3Df4Gh6Jk8Lz0Xc2V**",
        ["ghp_Zx8Qw2Er5Ty7Ui9Op1As3Df4Gh6Jk8Lz0Xc2V"],
    ),
    (
        "secret",
        "any",
        "OPENAI_API_KEY=sk-proj-7Tq2Lm9Xw4Rt\n8Yp3Zk6Bv1Nc5Df\nthanks",
        ["sk-proj-7Tq2Lm9Xw4Rt", "8Yp3Zk6Bv1Nc5Df"],
    ),
    ("secret", "any", '{"clientSecret": "Zx8Qw2Er5Ty7Ui9Op1As"}', ["Zx8Qw2Er5Ty7Ui9Op1As"]),
    ("secret", "any", "API key (prod): 7Hq2Lm9Xw4Rt8Yp3Zk6B", ["7Hq2Lm9Xw4Rt8Yp3Zk6B"]),
    (
        "secret",
        "any",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF9xk2QBCAC7v3mZ\n-----END PGP PRIVATE KEY BLOCK-----",
        ["lQOYBF9xk2QBCAC7v3mZ"],
    ),
    ("phone", "US", "Call me on 415·555·0132 after lunch.", ["415·555·0132"]),
    ("phone", "US", "Cell: 415 • 555 • 0199", ["415 • 555 • 0199"]),
]


def items() -> list[dict]:
    out: list[dict] = []

    def add(
        detector: str,
        country: str,
        text: str,
        planted: list[str],
        lead: tuple | None = None,
        regions: list[str] | None = None,
        colleagues: list[str] | None = None,
        sender: dict | None = None,
        extra: dict | None = None,
    ) -> None:
        first, last, company, lead_country = lead or LEADS[len(out) % len(LEADS)]
        out.append(
            {
                "id": f"{detector}-{len(out):03d}",
                "detector": detector,
                "country": country,
                "text": text,
                "planted": planted,
                "context": {
                    "lead": {"first_name": first, "last_name": last, "company": company},
                    "lead_country": lead_country if regions is None else (regions[0] if regions else None),
                    "sender": sender,
                    "lead_context": extra or {"colleagues": colleagues or []},
                },
            }
        )

    k = 0
    for region, numbers in PHONES.items():
        for number in numbers:
            lead = next((lead for lead in LEADS if lead[3] == region), LEADS[0])
            add("phone", region, PHONE_SENTENCES[k % len(PHONE_SENTENCES)].format(x=number), [number], lead=lead)
            k += 1
    for number in REGIONLESS_PHONES:
        add(
            "phone",
            "none",
            PHONE_SENTENCES[k % len(PHONE_SENTENCES)].format(x=number),
            [number],
            regions=[],
            lead=("Alex", "Kim", "Blue Owl", None),
        )
        k += 1
    for i, (link, _) in enumerate(LINKS):
        add("link", "any", LINK_SENTENCES[i % len(LINK_SENTENCES)].format(x=link), [link])
    for i, email in enumerate(EMAILS):
        add("email", "any", EMAIL_SENTENCES[i % len(EMAIL_SENTENCES)].format(x=email), [email])
    for i, (country, address) in enumerate(ADDRESSES):
        add(
            "address",
            country,
            ADDRESS_SENTENCES[i % len(ADDRESS_SENTENCES)].format(x=address),
            [part.strip() for part in _address_parts(address)],
        )
    for lead in LEADS:
        first, last, company, country = lead
        add("known_entity", country, f"Hi {first}, I saw that {company} is growing fast.", [first, company], lead=lead)
        add(
            "known_entity",
            country,
            f"Dear {first} {last}, congratulations to the whole {company} team.",
            [first, last, company],
            lead=lead,
        )
        add(
            "known_entity",
            country,
            f"{last.upper()} - quick idea for {first}'s team.",
            [last.upper(), first],
            lead=lead,
        )
        add("known_entity", country, f"Campaign abm-{_slug(company)} for {first}", [_slug(company), first], lead=lead)
    colleagues = ["Ana Silva", "Tom Becker", "Fatima Zahra", "Kenji Watanabe", "Ирина Петрова", "李娜"]
    for i, colleague in enumerate(colleagues):
        first_name = colleague.split()[0] if " " in colleague else colleague
        add(
            "known_entity",
            "any",
            f"{first_name} mentioned you are reviewing vendors; {colleague} suggested I reach out.",
            [colleague, first_name],
            colleagues=[colleague],
        )
        add(
            "known_entity",
            "any",
            f"Looping in {colleague} from your finance team.",
            [colleague],
            extra={"champion": {"name": colleague}, "notes": "met at SaaStr"},
        )
    for text in [
        f"Thanks,\n{SENDER['name']}\n{SENDER['title']}, {SENDER['company']}",
        f"{SENDER['name']} here from Acme Robotics.",
        f"I'm {SENDER['name'].split()[0]}, {SENDER['title']} at Acme Robotics.",
        f"-- \n{SENDER['name']} | {SENDER['title']}",
        "Sam Lee\nSenior Account Executive | Acme Robotics",
    ]:
        add(
            "known_entity",
            "GB",
            text,
            [SENDER["name"].split()[1], "Acme Robotics", SENDER["title"]]
            if "Acme" in text
            else [SENDER["name"].split()[1]],
            sender=SENDER,
        )
    # a surname inside the company name must not break the company match
    add(
        "known_entity",
        "DE",
        "Bei Müller & Söhne AG kennt Jonas Müller jeden Prozess.",
        ["Müller", "Söhne", "Jonas"],
        lead=LEADS[1],
    )
    add("known_entity", "DE", "Mueller & Soehne AG and Jonas Mueller", ["Mueller", "Soehne", "Jonas"], lead=LEADS[1])
    for i, card in enumerate(CARDS):
        add("card", "any", CARD_SENTENCES[i % len(CARD_SENTENCES)].format(x=card), [card])
    for i, iban in enumerate(IBANS):
        add("iban", iban[:2], IBAN_SENTENCES[i % len(IBAN_SENTENCES)].format(x=iban), [iban, iban[4:14]])
    for i, secret in enumerate(SECRETS):
        add("secret", "any", SECRET_SENTENCES[i % len(SECRET_SENTENCES)].format(x=secret), [secret, secret[-12:]])
    for text in LABELLED_SECRETS:
        add("secret", "any", f"For the pilot: {text}", [text.split()[-1]])
    for detector, country, text, planted in LATER:
        lead = next((lead for lead in LEADS if lead[3] == country), LEADS[0])
        add(detector, country, text, [planted], lead=lead)
    for detector, country, text, pieces in REREVIEW:
        add(detector, country, text, pieces, lead=next((lead for lead in LEADS if lead[3] == country), LEADS[0]))
    return out


def _address_parts(address: str) -> list[str]:
    """The parts of an address that identify a place (street with number, postcode)."""
    import re

    parts = re.findall(r"\d[\w-]*(?: [A-Z]{2})?|[^\W\d_]*(?:straße|str\.|strasse|gatan|gracht)\b", address)
    return [p for p in parts if len(p) >= 3]


def _slug(company: str) -> str:
    import re

    words = re.findall(r"\w+", company)
    return "-".join(w.lower() for w in words[:2])


if __name__ == "__main__":
    rows = items()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} items -> {OUT}")
