"""Seeding outcomes for the training tests, and running the real state machine in moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flywheel.local.aws import run_weekly_training
from tests.conftest import ROOT

ORG_SQL = "INSERT INTO organizations (org_id, training_opt_in) VALUES (%(org)s, %(opt_in)s) ON CONFLICT DO NOTHING"
SEED_SQL = """
INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, lead_email, subject, body, framework, tone,
                            brief, sent_at, lead_first_name, lead_last_name, lead_company, lead_industry, lead_role,
                            lead_company_size, delivered_at, replied_at, training_label, training_weight,
                            quality_score, stage)
SELECT %(org)s, %(org)s || '-' || %(prefix)s || '-' || i, 'q4-' || (i %% 3), 'lead-' || i,
       'lead' || i || '@northwind' || i || '.example',
       'Idea ' || i || ' for Northwind' || i,
       'Hi Dana' || i || E',\n' || (ARRAY[
           'Finance leaders at Northwind' || i || ' told us month-end drags on for weeks.',
           'Your controllers probably rebuild the same reconciliation spreadsheets every single quarter.',
           'Auditors keep asking Northwind' || i || ' for evidence that nobody can find quickly.',
           'Growing through acquisitions makes intercompany eliminations painful and slow.',
           'Most CFOs we meet want fewer manual journal entries before year-end.',
           'Cash forecasting falls apart whenever bank feeds arrive late or incomplete.',
           'Hiring more accountants rarely fixes a broken close calendar.'])[1 + i %% 7] || ' ' || (ARRAY[
           'We automate matching so exceptions surface on day one.',
           'Our customers cut three days from their close within one quarter.',
           'Teams usually see audit preparation shrink by half.',
           'It plugs into NetSuite, Sage Intacct and Xero without a migration.',
           'Variance analysis gets written for you, with the drivers highlighted.',
           'Approvals move into one queue instead of endless email threads.',
           'Dashboards show which entities are late before anyone has to chase them.',
           'Controllers get their evenings back during close week.',
           'Everything is logged for SOX with zero extra effort.',
           'Implementation takes about six weeks with our specialists.',
           'Pricing scales with entities rather than seats.'])[1 + i %% 11] || ' ' || (ARRAY[
           'A logistics group in Rotterdam went live in five weeks.', 'Your auditors can log in and pull evidence themselves.',
           'Bank rules are learned from the matches your team already made.', 'Nothing changes in how your ERP posts entries.',
           'We price per entity, so adding users costs nothing.', 'The first reconciliations run on historical data in a day.',
           'Exceptions are routed to whoever owns the account.', 'Every approval carries a timestamp and a reason.',
           'Multi-currency revaluation runs overnight.', 'Budget owners see their variances without asking finance.',
           'Our onboarding team has done this for three hundred companies.', 'Cash positions update every hour from the banks.',
           'Close checklists roll forward automatically each month.', 'You can start with one entity and expand later.',
           'Journal entries above a threshold ask for a second approver.', 'Reports export straight into your board deck.',
           'Security reviews usually finish within two weeks.'])[1 + i %% 17] || ' ' || (ARRAY[
           'Worth a short call next Tuesday?', 'Open to comparing notes this week?',
           'Could I send a two-minute video?', 'Should I share a case study from logistics?',
           'Is this on your roadmap for next year?', 'Who owns close tooling on your side?',
           'Would a benchmark of your close be useful?', 'Shall we find fifteen minutes?',
           'Any interest in a pilot with one entity?', 'Can I show you the reconciliation view?',
           'Does Thursday morning work for a quick demo?', 'Would your controller want to join?',
           'Happy to tailor a walkthrough - interested?'])[1 + i %% 13] ||
       E'.\nCall me on +1 415 555 ' || lpad((1000 + i)::text, 4, '0') ||
       E' or book https://cal.example.com/sam?utm_content=' || md5(i::text) ||
       E'\nSam (sam@acme.example)',
       (ARRAY['PAS', 'AIDA', 'BAB'])[1 + i %% 3], 'professional', 'close automation for ' || 'Northwind' || i,
       now() - make_interval(days => 1 + i %% 20), 'Dana' || i, 'Reyes' || i, 'Northwind' || i,
       (ARRAY['fintech', 'saas'])[1 + i %% 2], 'cfo', '201-1000', now() - make_interval(days => 1),
       CASE WHEN %(label)s = 'negative' THEN NULL ELSE now() END, %(label)s, 3.0, %(quality)s,
       'replied'
  FROM generate_series(1, %(n)s) AS i
"""


def seed_outcomes(
    db: Any,
    n: int,
    *,
    org: str = "acme",
    opt_in: bool = True,
    label: str = "positive",
    quality: float = 0.8,
    prefix: str = "s",
) -> None:
    db.execute(ORG_SQL, {"org": org, "opt_in": opt_in})
    db.execute(SEED_SQL, {"org": org, "opt_in": opt_in, "n": n, "label": label, "quality": quality, "prefix": prefix})


def run_state_machine(
    payload: dict[str, Any], on_tick: Callable[[], object] | None = None, timeout_s: float = 60
) -> dict[str, Any]:
    return run_weekly_training(ROOT, payload, on_tick, timeout_s)
