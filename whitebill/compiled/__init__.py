"""The compiled read path for registered operations (issue: fast reads): PostgreSQL builds a response's JSON
in one statement. Built piece by piece; :mod:`whitebill.compiled.values` writes values as the API does."""
