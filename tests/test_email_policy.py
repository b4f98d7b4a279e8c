"""Who may register: swot's academic list, admins' allow and block lists."""

import pytest

from frontend.accounts.services import decide_email, domain_matches
from frontend.core.models import DomainRule, DomainRuleKind

CONTACT = "help@example.org"


def decide(email, rules=(), academic_only=True):
    return decide_email(email, rules, academic_only=academic_only, contact=CONTACT)


@pytest.mark.parametrize(
    ("email", "institution"),
    [
        ("a@mail.imperial.ac.uk", "Imperial College London"),
        ("a@cs.ox.ac.uk", "University of Oxford"),
        ("a@mit.edu", "Massachusetts Institute of Technology"),
        ("A@CS.OX.AC.UK", "University of Oxford"),
    ],
)
def test_academic_addresses_and_their_subdomains_are_accepted(email, institution):
    assert decide(email).allowed
    assert decide(email).institution == institution


@pytest.mark.parametrize(
    "email", ["a@notmit.edu", "a@gmail.com", "a@mit.edu.evil.com", "a@ox.ac.uk.co"]
)
def test_look_alikes_and_free_mail_are_refused_with_the_contact(email):
    decision = decide(email)
    assert not decision.allowed
    assert CONTACT in decision.reason


def test_institution_skips_swot_metadata_lines():
    # swot lists "URL: …" lines among EMBL's names.
    assert decide("a@embl.de").institution == "European Molecular Biology Laboratory"


def test_block_list_beats_swot_and_allow_list():
    rules = [
        DomainRule(domain="ox.ac.uk", kind=DomainRuleKind.BLOCK),
        DomainRule(domain="cs.ox.ac.uk", kind=DomainRuleKind.ALLOW),
    ]
    decision = decide("a@cs.ox.ac.uk", rules)
    assert not decision.allowed
    assert "cannot register here" in decision.reason


def test_allow_list_admits_unknown_institutes_with_their_name():
    rules = [
        DomainRule(
            domain="crg.example",
            kind=DomainRuleKind.ALLOW,
            institution="Centre for Genomic Regulation",
        )
    ]
    decision = decide("a@lab.crg.example", rules)
    assert decision.allowed
    assert decision.institution == "Centre for Genomic Regulation"


def test_anyone_may_register_when_academic_only_is_off():
    assert decide("a@gmail.com", academic_only=False).allowed
    blocked = [DomainRule(domain="gmail.com", kind=DomainRuleKind.BLOCK)]
    assert not decide("a@gmail.com", blocked, academic_only=False).allowed


@pytest.mark.parametrize(
    ("domain", "rule", "matches"),
    [
        ("ox.ac.uk", "ox.ac.uk", True),
        ("cs.ox.ac.uk", "ox.ac.uk", True),
        ("box.ac.uk", "ox.ac.uk", False),
        ("ox.ac.uk", ".OX.ac.uk", True),
        ("ox.ac.uk.evil.com", "ox.ac.uk", False),
    ],
)
def test_domain_matching_is_by_whole_labels(domain, rule, matches):
    assert domain_matches(domain, rule) is matches
