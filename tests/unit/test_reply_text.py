"""Cutting quoted history and signatures off a reply, in the forms mail clients really use.

mail-parser-reply does the first pass; these cases include the ones it misses (Gmail attribution
lines in Spanish, Portuguese, Dutch, Russian and Chinese, Outlook blocks in Russian and Japanese,
mobile signatures, "-- " signatures, inline quotes), which our own rules handle.
"""

import pytest

from flywheel.domain.reply_text import html_to_text, normalise_newlines, reply_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Sounds good, Tuesday works.\n\nOn Mon, Jan 6, 2025 at 10:00 AM Sam Lee <sam@acme.example> wrote:\n> Hi Dana,\n> quick idea\n",
            "Sounds good, Tuesday works.",
        ),  # en_gmail
        (
            "Sounds good.\n\nOn Mon, Jan 6, 2025 at 10:00 AM Sam Lee <sam@acme.example>\nwrote:\n> Hi\n",
            "Sounds good.",
        ),  # en_gmail_wrapped
        (
            "Not now, thanks.\n\nBest,\nDana\n\n________________________________\nFrom: Sam Lee <sam@acme.example>\nSent: Monday, January 6, 2025 10:00 AM\nTo: Dana Reyes <dana@northwind.example>\nSubject: Quick idea\n\nHi Dana,\n",
            "Not now, thanks.",
        ),  # en_outlook
        ("Call me.\n\n-----Original Message-----\nFrom: Sam\nSent: Monday\nHi", "Call me."),  # en_outlook_orig
        (
            "Yes please.\n\nSent from my iPhone\n\n> On 6 Jan 2025, at 10:00, Sam Lee <sam@acme.example> wrote:\n>\n> Hi Dana\n",
            "Yes please.",
        ),  # en_apple
        (
            "Bitte im Januar melden.\n\nAm Mo., 6. Jan. 2025 um 10:00 Uhr schrieb Sam Lee <sam@acme.example>:\n> Hallo\n",
            "Bitte im Januar melden.",
        ),  # de_gmail
        (
            "Kein Interesse.\n\nMit freundlichen Grüßen\nJonas Berg\n\nVon: Sam Lee <sam@acme.example>\nGesendet: Montag, 6. Januar 2025 10:00\nAn: Jonas Berg\nBetreff: Idee\n\nHallo Jonas,",
            "Kein Interesse.",
        ),  # de_outlook
        (
            "Pas pour le moment.\n\nLe lun. 6 janv. 2025 à 10:00, Sam Lee <sam@acme.example> a écrit :\n> Bonjour\n",
            "Pas pour le moment.",
        ),  # fr_gmail
        (
            "Merci, non.\n\nDe : Sam Lee <sam@acme.example>\nEnvoyé : lundi 6 janvier 2025 10:00\nÀ : Claire\nObjet : Idée\n\nBonjour",
            "Merci, non.",
        ),  # fr_outlook
        (
            "Ahora no.\n\nEl lun, 6 ene 2025 a las 10:00, Sam Lee (<sam@acme.example>) escribió:\n> Hola\n",
            "Ahora no.",
        ),  # es_gmail
        (
            "Gracias, no.\n\nDe: Sam Lee <sam@acme.example>\nEnviado: lunes, 6 de enero de 2025 10:00\nPara: Lucía\nAsunto: Idea\n",
            "Gracias, no.",
        ),  # es_outlook
        (
            "Agora não.\n\nEm seg., 6 de jan. de 2025 às 10:00, Sam Lee <sam@acme.example> escreveu:\n> Olá\n",
            "Agora não.",
        ),  # pt_gmail
        (
            "Obrigado.\n\nDe: Sam Lee <sam@acme.example>\nEnviado: segunda-feira, 6 de janeiro de 2025 10:00\nPara: Ana\nAssunto: Ideia\n",
            "Obrigado.",
        ),  # pt_outlook
        (
            "Non ora.\n\nIl giorno lun 6 gen 2025 alle ore 10:00 Sam Lee <sam@acme.example> ha scritto:\n> Ciao\n",
            "Non ora.",
        ),  # it_gmail
        (
            "Grazie, no.\n\nDa: Sam Lee <sam@acme.example>\nInviato: lunedì 6 gennaio 2025 10:00\nA: Marco\nOggetto: Idea\n",
            "Grazie, no.",
        ),  # it_outlook
        (
            "Nu even niet.\n\nOp ma 6 jan. 2025 om 10:00 schreef Sam Lee <sam@acme.example>:\n> Hallo\n",
            "Nu even niet.",
        ),  # nl_gmail
        (
            "Nee dank je.\n\nVan: Sam Lee <sam@acme.example>\nVerzonden: maandag 6 januari 2025 10:00\nAan: Pieter\nOnderwerp: Idee\n",
            "Nee dank je.",
        ),  # nl_outlook
        (
            "Давайте созвонимся.\n\nпн, 6 янв. 2025 г. в 10:00, Sam Lee <sam@acme.example>:\n> Здравствуйте\n",
            "Давайте созвонимся.",
        ),  # ru_gmail
        (
            "Спасибо, нет.\n\nОт: Sam Lee <sam@acme.example>\nОтправлено: 6 января 2025 г. 10:00\nКому: Ольга\nТема: Идея\n",
            "Спасибо, нет.",
        ),  # ru_outlook
        ('Интересно.\n\n06.01.2025, 10:00, "Sam Lee" <sam@acme.example>:\n> Здравствуйте\n', "Интересно."),  # ru_yandex
        (
            "資料をお願いします。\n\n2025年1月6日(月) 10:00 Sam Lee <sam@acme.example>:\n> こんにちは\n",
            "資料をお願いします。",
        ),  # ja_gmail
        (
            "検討します。\n\n差出人: Sam Lee <sam@acme.example>\n送信日時: 2025年1月6日 10:00\n宛先: 佐藤\n件名: ご提案\n",
            "検討します。",
        ),  # ja_outlook
        (
            "好的，周二可以。\n\nSam Lee <sam@acme.example> 于2025年1月6日周一 10:00写道：\n> 你好\n",
            "好的，周二可以。",
        ),  # zh_gmail
        (
            "谢谢，不需要。\n\n发件人: Sam Lee <sam@acme.example>\n发送时间: 2025年1月6日 10:00\n收件人: 王\n主题: 想法\n",
            "谢谢，不需要。",
        ),  # zh_outlook
        ("Sure, send it.\n\n-- \nDana Reyes\nCFO, Northwind\n+1 555 0100", "Sure, send it."),  # sig_dashes
        ("Ja gerne.\n\nVon meinem iPhone gesendet", "Ja gerne."),  # sig_mobile_de
        ("Oui.\n\nEnvoyé de mon iPhone", "Oui."),  # sig_mobile_fr
        ("OK.\n\nSent from my Galaxy", "OK."),  # sig_android
        ("Fine.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Fine."),  # sig_outlook_mobile
        ("Yes please\n> quoted line\nsee you then", "Yes please\nsee you then"),  # inline_kept
        ("Just a plain reply", "Just a plain reply"),  # plain
        ("Call me.\r\n\r\n-----Original Message-----\r\nFrom: Sam\r\nSent: Monday", "Call me."),
        ("Thanks,\nDana", "Thanks,\nDana"),  # a closing is only cut when something precedes it
        ("Thanks, but no - we use a competitor.\n\nDana", "Thanks, but no - we use a competitor.\n\nDana"),
        ("From: our side the answer is yes.\nCall me.", "From: our side the answer is yes.\nCall me."),
        # an outside review's cases
        (
            "Merci.\n\nDe : Sam Lee <sam@acme.example>\nEnvoyé : lundi 23 novembre 2026 09:00\nObjet : devis\n\nBonjour",
            "Merci.",
        ),
        ("Sure.\n\nSam Lee wrote:\nHi there", "Sure."),
        (
            "Here is what one CFO wrote:\nIt paid back in a month.",
            "Here is what one CFO wrote:\nIt paid back in a month.",
        ),
        ("See below.\n\n---------- Forwarded message ---------\nFrom: Tom <tom@acme.example>\n\nbudget", "See below."),
        ("See below.\n\nBegin forwarded message:\n\nFrom: Tom <tom@acme.example>", "See below."),
        # the review of #12: Thunderbird in Russian, Apple Mail in Japanese and Dutch, Outlook in
        # Traditional Chinese and Korean, Gmail in Korean, Spark, localised Outlook mobile footers,
        # Gmail's inline-image placeholder
        ("Интересно.\n\n23.11.2026 09:00, Sam Lee пишет:\n> Здравствуйте", "Интересно."),
        ("承知しました。\n\n2026/11/23 9:00、Sam Lee <sam@acme.example>のメール:\n\n佐藤様", "承知しました。"),
        (
            "Prima.\n\nOp 23 nov. 2026 om 09:00 heeft Sam Lee <sam@acme.example> het volgende geschreven:\n\nHallo",
            "Prima.",
        ),
        (
            "好的。\n\n寄件者: Sam Lee <sam@acme.example>\n寄件日期: 2026年11月23日 上午 09:00\n收件者: 陳\n主旨: 提議\n",
            "好的。",
        ),
        (
            "좋습니다.\n\n보낸 사람: Sam Lee <sam@acme.example>\n보낸 날짜: 2026년 11월 23일 월요일 오전 9:00\n받는 사람: 김\n"
            "제목: 제안\n",
            "좋습니다.",
        ),
        (
            "관심 있습니다.\n\n2026년 11월 23일 (월) 오전 9:00, Sam Lee <sam@acme.example>님이 작성:\n> 안녕하세요",
            "관심 있습니다.",
        ),
        ("Pricing?\n\nSent with Spark", "Pricing?"),
        ("Ja.\n\nVerstuurd vanaf mijn iPhone", "Ja."),
        ("Oui.\n\nObtenir Outlook pour iOS<https://aka.ms/o0ukef>", "Oui."),
        ("Да.\n\nПолучить Outlook для Android<https://aka.ms/ghei36>", "Да."),
        (
            "We use Outlook on iOS and Android.\nCan you integrate?",
            "We use Outlook on iOS and Android.\nCan you integrate?",
        ),
        ("Great, Tuesday.\n[image: logo.png]\n\nDana", "Great, Tuesday.\n\nDana"),
    ],
)
def test_reply_text(text: str, expected: str) -> None:
    assert reply_text(text) == expected
    assert reply_text(text.replace("\n", "\r\n")) == expected  # raw MIME line endings


def test_newlines() -> None:
    assert normalise_newlines("a\r\nb\rc\n") == "a\nb\nc\n"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            "<html><head><title>RE: Idea</title><style>p {margin:0}</style></head><body><p>Yes&nbsp;please &amp; "
            "thanks</p><blockquote>quoted <blockquote>deeper</blockquote> still quoted</blockquote><p>Dana</p></body></html>",
            "Yes please & thanks\n\nDana",
        ),
        (
            '<div dir="ltr">Sure<div class="gmail_signature">Dana | CFO</div></div><div class="gmail_quote">On Mon, '
            'Sam wrote:<blockquote class="gmail_quote">Hi</blockquote></div>',
            "Sure",
        ),
        (
            "<p>a < b and <b>bold</b><!-- a comment --> <!DOCTYPE x>end</p><p>unclosed <blockquote><p>q</blockquote>after",
            "a < b and bold end\n\nunclosed\nafter",
        ),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@pytest.mark.parametrize("hostile", ["reply_text", "html_to_text", "classify_offline"])
def test_hostile_text_is_read_in_linear_time(hostile: str) -> None:
    """Before the review of #12, 60 KB of "On " took 222 s in mail-parser-reply, 220 KB of unclosed
    "<blockquote" 43 s in the HTML regex, 50 KB of "Jan 1 " 8 s in the date reader: a webhook or
    classifier Lambda timing out, retried for days. Each now takes well under a second."""
    from datetime import date

    from flywheel.domain.reply_rules import classify_offline
    from tests.conftest import deadline

    with deadline(15, hostile):
        if hostile == "reply_text":
            reply_text("On " * 20_000 + "\n" + ("On " * 330 + "\n") * 60)
        elif hostile == "html_to_text":
            html_to_text(
                "<blockquote" * 20_000 + "<style" * 20_000 + "<a" * 20_000 + "<span>" * 20_000 + "</div>" * 20_000
            )
        else:
            classify_offline(("Jan 1 " * 9_000)[:50_000], date(2026, 11, 27))
            classify_offline(("reach out to " * 4_000)[:50_000], date(2026, 11, 27))


# an outside review of the stored reply text: our own pitch must never be stored, classified or
# trained on as the lead's words
PITCH = (
    "> Hi Dana,\n>\n> Finance teams at companies like Northwind cut month-end close by three days with Acme.\n"
    "> Would you be open to a 15-minute call next week to see how?\n>\n> Best,\n> Sam\n"
)
GMAIL_ATTRIBUTION = "On Tue, 24 Nov 2026 at 10:12, Sam Lee <sam@acme.example> wrote:"


@pytest.mark.parametrize(
    "text",
    [
        "\n\n" + GMAIL_ATTRIBUTION + "\n\n" + PITCH,  # Gmail: only an attachment above the quote
        "\n\nSent from my iPhone\n\n> On 24 Nov 2026, at 10:12, Sam Lee <sam@acme.example> wrote:\n>\n" + PITCH,
        "Von meinem iPhone gesendet\n\n> Am 24.11.2026 um 10:12 schrieb Sam Lee <sam@acme.example>:\n>\n" + PITCH,
        "\n\n-----Original Message-----\nFrom: Sam Lee <sam@acme.example>\nSent: Tuesday\nTo: Dana\nSubject: idea\n\n"
        + PITCH.replace("> ", ""),
    ],
    ids=["gmail_attachment_only", "iphone_signature_only", "iphone_signature_only_de", "outlook_empty"],
)
def test_a_reply_without_text_of_its_own_is_empty_never_our_pitch(text: str) -> None:
    from datetime import date

    from flywheel.domain.reply_rules import classify_offline

    assert reply_text(text) == ""
    # the classifier reads nothing into it either (it used to read our pitch: meeting_request)
    assert classify_offline(text, date(2026, 11, 24)).category == "other"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # Thunderbird, bottom-posting
            "On 24/11/2026 10:12, Sam Lee wrote:\n"
            + PITCH
            + "\nNot interested, we just signed with a competitor.\n\nDana\n",
            "Not interested, we just signed with a competitor.\n\nDana",
        ),
        (  # Thunderbird in German, the lead signs off below
            "Am 24.11.2026 um 10:12 schrieb Sam Lee:\n" + PITCH + "\nKein Bedarf, danke.\n\nViele Grüße\nJonas\n",
            "Kein Bedarf, danke.",
        ),
        (  # answers inline
            "Hi Sam, answers inline.\n\n"
            + GMAIL_ATTRIBUTION
            + "\n\n> Would you be open to a 15-minute call next week?\n\n"
            "No. We already use BlackLine and are happy with it.\n\n> Is month-end close a priority?\n\nNot this year.\n",
            "Hi Sam, answers inline.\n\nNo. We already use BlackLine and are happy with it.\n\nNot this year.",
        ),
        (  # an answer typed straight under a short quoted question
            GMAIL_ATTRIBUTION + "\n> Would you be open to a call?\nYes.\n> Which day?\nTuesday.\n",
            "Yes.\nTuesday.",
        ),
        (  # a long quoted line the client wrapped without its ">": the tail is ours, not the lead's
            "On 24/11/2026 10:12, Sam Lee wrote:\n> Finance teams at companies like Northwind cut month-end close by\n"
            "three days with Acme.\n> Would you be open to a call?\n\nNo thanks.\n",
            "No thanks.",
        ),
        (  # below the marked quote, an older message in an unmarked Outlook block is history again
            GMAIL_ATTRIBUTION
            + "\n> Would you be open to a call?\n\nMaybe in March.\n\nFrom: Sam Lee <sam@acme.example>\n"
            "Sent: Monday, November 2, 2026 09:00\nTo: Dana Reyes\nSubject: idea\n\nFinance teams at companies like ours\n",
            "Maybe in March.",
        ),
        (  # top-posted above an unmarked quote (Yahoo's indented one): everything below is history
            "Interested.\n\n    " + GMAIL_ATTRIBUTION + "\n\n Hi Dana,\n Finance teams at companies like Northwind\n",
            "Interested.",
        ),
        (  # a server disclaimer appended under the whole thread
            "Sounds good.\n\n"
            + GMAIL_ATTRIBUTION
            + "\n"
            + PITCH
            + "\nThis e-mail and any attachments are confidential "
            "and intended solely for the addressee. If you have received this email in error, please delete it.\n",
            "Sounds good.",
        ),
    ],
    ids=[
        "bottom_posted",
        "bottom_posted_de",
        "inline",
        "inline_tight",
        "wrapped_quote",
        "outlook_below",
        "yahoo",
        "footer",
    ],
)
def test_the_leads_lines_below_and_between_marked_quotes_are_the_reply(text: str, expected: str) -> None:
    assert reply_text(text) == expected
    assert reply_text(text.replace("\n", "\r\n")) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Hi Sam,\n\nThanks!\nLet's talk Tuesday at 2pm.\nSend me an invite.\n\nDana\n",
            "Hi Sam,\n\nThanks!\nLet's talk Tuesday at 2pm.\nSend me an invite.\n\nDana",
        ),
        ("Hello,\n\nThank you.\nWe're not interested.\n", "Hello,\n\nThank you.\nWe're not interested."),
        ("Hi Sam,\n\nThanks!\nWhat does it cost\n", "Hi Sam,\n\nThanks!\nWhat does it cost"),
        (
            "Hallo,\n\nDanke.\nSpasibo!\n\nСпасибо\nНе интересно.",
            "Hallo,\n\nDanke.\nSpasibo!\n\nСпасибо\nНе интересно.",
        ),
        # still a sign-off: a name, a title, a company, a phone number after it
        ("Not now.\n\nThanks!\nDana Reyes\nCFO | Northwind Traders Inc.\n+1 555 0100", "Not now."),
        ("Send the deck.\n\nBest regards,\nDana\nHead of Finance", "Send the deck."),
    ],
)
def test_a_thanks_line_followed_by_sentences_is_not_the_sign_off(text: str, expected: str) -> None:
    assert reply_text(text) == expected


@pytest.mark.parametrize(
    "disclaimer",
    [
        "This message is intended only for the addressee. If you have received this email in error, please notify the "
        "sender and delete it from your system. You must not copy, forward or disclose its contents.",
        "CONFIDENTIALITY NOTICE: This e-mail message, including any attachments, is for the sole use of the intended "
        "recipient(s). If you are not the intended recipient, please contact the sender and destroy all copies.",
        "Diese E-Mail enthält vertrauliche Informationen. Wenn Sie nicht der richtige Adressat sind oder diese E-Mail "
        "irrtümlich erhalten haben, informieren Sie bitte sofort den Absender.",
        "Ce message et toutes les pièces jointes sont confidentiels. Si vous avez reçu ce message par erreur, merci "
        "d'en avertir immédiatement l'émetteur.",
        "Este mensaje es confidencial. Si usted ha recibido este mensaje por error, le rogamos que lo comunique al "
        "remitente y lo elimine.",
        "Esta mensagem pode conter informação confidencial. Se você recebeu esta mensagem por engano, avise o "
        "remetente e apague-a.",
        "Questo messaggio e i suoi allegati sono riservati. Se avete ricevuto questo messaggio per errore, vi "
        "preghiamo di avvisare il mittente.",
        "Dit bericht is uitsluitend bestemd voor de geadresseerde. Indien u dit bericht ten onrechte ontvangt, "
        "verzoeken wij u de afzender te informeren.",
        "Это сообщение и любые приложения к нему конфиденциальны. Если вы получили это сообщение по ошибке, "
        "пожалуйста, сообщите отправителю.",
        "本メールは機密情報を含む場合があります。誤って受信された場合は、送信者にご連絡の上、削除してください。お手数ですがよろしくお願いします。",
    ],
)
def test_a_disclaimer_at_the_end_is_cut(disclaimer: str) -> None:
    reply = "Not right now, maybe next quarter.\n\nDana Reyes\nCFO | Northwind"
    assert reply_text(f"{reply}\n\n{disclaimer}\n") == reply
    # straight under the signature, without a blank line
    assert reply_text(f"{reply}\n{disclaimer}\n") == reply


def test_a_reply_about_confidentiality_is_kept() -> None:
    text = "Happy to talk.\n\nIs this confidential? We would need an NDA before we share any numbers with you."
    assert reply_text(text) == text
    assert reply_text("This message is confidential.") == "This message is confidential."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Ja, ring mig.\n\nFrån: Sam Lee <sam@acme.example>\nSkickat: den 24 november 2026 10:12\nTill: Dana\n"
            "Ämne: Idé\n\nFinance teams at companies like Northwind cut month-end close.\n",
            "Ja, ring mig.",
        ),  # sv_outlook
        (
            "Tak, proszę dzwonić.\n\nOd: Sam Lee <sam@acme.example>\nWysłano: wtorek, 24 listopada 2026 10:12\nDo: Dana\n"
            "Temat: Pomysł\n\nFinance teams at companies like Northwind cut month-end close.\n",
            "Tak, proszę dzwonić.",
        ),  # pl_outlook
        (
            "Evet.\n\nKimden: Sam Lee <sam@acme.example>\nGönderildi: 24 Kasım 2026 Salı 10:12\nKime: Dana\nKonu: Fikir\n\n"
            "Finance teams\n",
            "Evet.",
        ),  # tr_outlook
        (
            "Ja tak.\n\nFra: Sam Lee <sam@acme.example>\nSendt: 24. november 2026 10:12\nTil: Dana\nEmne: Idé\n\nFinance\n",
            "Ja tak.",
        ),  # da_outlook
        (
            "Tak, zadzwoń we wtorek.\n\nwt., 24 lis 2026 o 10:12 Sam Lee <sam@acme.example> napisał(a):\n" + PITCH,
            "Tak, zadzwoń we wtorek.",
        ),  # pl_gmail
        (
            "Evet, salı arayın.\n\nSam Lee <sam@acme.example>, 24 Kas 2026 Sal, 10:12 tarihinde şunu yazdı:\n" + PITCH,
            "Evet, salı arayın.",
        ),  # tr_gmail
        ("Ja, gärna.\n\nDen tis 24 nov. 2026 kl 10:12 skrev Sam Lee <sam@acme.example>:\n" + PITCH, "Ja, gärna."),
        (
            "Ja, gärna.\n\nSkickat från min iPhone\n\n> 24 nov. 2026 kl. 10:12 skrev Sam Lee <sam@acme.example>:\n"
            + PITCH,
            "Ja, gärna.",
        ),  # sv_apple
        (
            "Tak.\n\nWysłane z iPhone'a\n\n> Wiadomość napisana przez Sam Lee <sam@acme.example> w dniu 24.11.2026, o "
            "godz. 10:12:\n" + PITCH,
            "Tak.",
        ),  # pl_apple
        ("Evet.\n\niPhone'umdan gönderildi", "Evet."),
        ("네 좋습니다.\n\n나의 iPhone에서 보냄", "네 좋습니다."),
        ("Ja, ring mig.\n\nMed vänliga hälsningar\nDana Reyes", "Ja, ring mig."),
        ("Tak, proszę dzwonić.\n\nPozdrawiam\nDana", "Tak, proszę dzwonić."),
    ],
)
def test_quote_headers_and_signatures_in_more_languages(text: str, expected: str) -> None:
    assert reply_text(text) == expected
