"""Where the words of a shell command line are, as the shell splits them, with their text as typed.

The notations rewrite some words of a command and leave the rest of its text
byte for byte, so they need each word's span in the text rather than its
value: `split_words` finds them (quotes, backslashes, `$(...)`, `${...}` and
backquotes kept inside a word; blanks and the operators `; & | ( ) < >` between
words; a `#` starting a word begins a comment). `unquote` gives a word's value
for the simple quoting the notations need to read (`'...'`, `"..."`, `\\x`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Word", "UnbalancedError", "skip_substitution", "split_words", "unquote"]

_BLANKS = " \t"
_OPERATORS = ";&|()<>\n"
# A word that sets a shell variable before the command name (bash expands no braces in it).
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")


class UnbalancedError(ValueError):
    """A quote, `$(`, `${` or backquote is never closed; `position` is where it opened."""

    def __init__(self, what: str, position: int) -> None:
        super().__init__(what)
        self.what = what
        self.position = position


@dataclass(frozen=True)
class Word:
    """One shell word: its span in the command text and whether it is a leading variable assignment."""

    start: int
    end: int
    text: str
    assignment: bool = False


def skip_substitution(text: str, i: int, close: str = ")") -> int:
    """Return the index just past the `close` that ends the `$(`, `${` or `((` whose body starts at i.

    Quotes, backslashes and nested substitutions inside are skipped over.

    Raises:
        UnbalancedError: the text ends first.
    """
    opener = {")": "(", "}": "{"}[close]
    depth = 1
    start = i
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "'\"`":
            i = _skip_quote(text, i)
            continue
        if c == "$" and i + 1 < len(text) and text[i + 1] in "({":
            i = skip_substitution(text, i + 2, ")" if text[i + 1] == "(" else "}")
            continue
        if c == opener:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise UnbalancedError(f"unclosed {'$(' if close == ')' else '${'}", start - 2)


def _skip_quote(text: str, i: int) -> int:
    """Return the index just past the quote that opens at i."""
    quote = text[i]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == quote:
            return j + 1
        if c == "\\" and quote != "'":
            j += 2
            continue
        if quote == '"' and c == "$" and j + 1 < len(text) and text[j + 1] in "({":
            j = skip_substitution(text, j + 2, ")" if text[j + 1] == "(" else "}")
            continue
        j += 1
    raise UnbalancedError(f"unclosed {quote} quote", i)


def split_words(text: str) -> list[Word]:
    """Split shell text into its words, keeping each word's text as typed.

    Raises:
        UnbalancedError: a quote or substitution is never closed.
    """
    words: list[Word] = []
    command_position = True  # the next word may be a leading assignment
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in _BLANKS:
            i += 1
            continue
        if c in _OPERATORS:
            # A new simple command starts after ; & | ( and a newline, not after a redirection.
            command_position = c not in "<>" and (c != ")")
            i += 1
            continue
        if c == "#":
            break  # a comment runs to the end of the line
        start = i
        while i < n and text[i] not in _BLANKS and text[i] not in _OPERATORS:
            c = text[i]
            if c == "\\":
                i += 2
            elif c in "'\"`":
                i = _skip_quote(text, i)
            elif c == "$" and i + 1 < n and text[i + 1] in "({":
                i = skip_substitution(text, i + 2, ")" if text[i + 1] == "(" else "}")
            else:
                i += 1
        i = min(i, n)
        word = text[start:i]
        assignment = command_position and _ASSIGNMENT.match(word) is not None
        words.append(Word(start, i, word, assignment))
        command_position = assignment
    return words


def unquote(word: str) -> str:
    """A word's value after the shell's quote removal, for words without expansions."""
    out: list[str] = []
    i = 0
    while i < len(word):
        c = word[i]
        if c == "\\":
            out.append(word[i + 1 : i + 2])
            i += 2
        elif c == "'":
            end = word.index("'", i + 1)
            out.append(word[i + 1 : end])
            i = end + 1
        elif c == '"':
            j = i + 1
            while word[j] != '"':
                if word[j] == "\\" and word[j + 1] in '$`"\\\n':
                    j += 1
                out.append(word[j])
                j += 1
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
