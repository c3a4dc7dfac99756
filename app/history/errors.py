"""Errors the history store raises for things a user (or a damaged file) can cause."""

from __future__ import annotations


class HistoryError(Exception):
    """Base class: something is wrong with the conversation history."""


class NotFound(HistoryError):
    """A conversation or message id that is not (or no longer) in the database."""


class SchemaTooNew(HistoryError):
    """The database was written by a newer Lantern; it is left untouched."""


class ImportFormatError(HistoryError):
    """A file given to import_json is not a Lantern conversation export."""
