"""What production requires of ``SECRET_KEY``: a random value, not merely a long one.

Django signs sessions, password-reset links and CSRF tokens with it; a guessable key (``'a' * 50``,
``'changeme' * 4``, the development key) lets anyone forge them. Randomness cannot be proven from one
value, but the keys people type by hand fail at least one of these rules, and every generated key —
``secrets.token_urlsafe(50)``, ``openssl rand -hex 32`` or ``-base64 48`` — passes them all.
"""

from __future__ import annotations

GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
MIN_LENGTH = 50  # Django's own deploy check (security.W009) asks for 50
MIN_DISTINCT_CHARACTERS = 10  # a hexadecimal key has 16
MIN_DISTINCT_TRIGRAM_SHARE = 0.8  # a random key repeats almost no 3-character sequence
INSECURE_PREFIXES = ("dev-insecure", "django-insecure", "test-only")


def secret_key_problems(key: str) -> list[str]:
    """Why ``key`` is not acceptable as a production ``SECRET_KEY`` (empty when it is)."""
    if not key:
        return ["it is not set"]
    problems = []
    if key.startswith(INSECURE_PREFIXES):
        problems.append("it is a development or test key")
    if len(key) < MIN_LENGTH:
        problems.append(f"it has {len(key)} characters, fewer than {MIN_LENGTH}")
    distinct = len(set(key))
    if distinct < MIN_DISTINCT_CHARACTERS:
        problems.append(f"it uses only {distinct} different characters, fewer than {MIN_DISTINCT_CHARACTERS}")
    trigrams = [key[i : i + 3] for i in range(len(key) - 2)]
    if trigrams and len(set(trigrams)) < MIN_DISTINCT_TRIGRAM_SHARE * len(trigrams):
        problems.append("it repeats a pattern")
    return problems


def secret_key_error(problems: list[str]) -> str:
    return (
        f"SECRET_KEY must be a random value in production, and this one is not: {'; '.join(problems)}. "
        f"Generate one with: {GENERATE}"
    )
