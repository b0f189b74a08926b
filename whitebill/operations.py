"""Persisted operations: Apollo's automatic persisted queries (APQ), and a registry of trusted operations.

**APQ.** A request may name its document by hash, by POST or GET:
``"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<hex of SHA-256 of the document>"}}``.

- With the hash alone, the document of that hash runs if this process knows it (registered, or sent
  before with its hash). Otherwise the answer is PERSISTED_QUERY_NOT_FOUND, and the client sends the
  document with its hash once.
- A document whose SHA-256 is not the hash it came with is refused with PERSISTED_QUERY_HASH_MISMATCH.
- Documents learnt this way are kept in this process's memory only, a bounded number with the least
  recently used forgotten first, so nobody can fill the database by sending queries.

**The registry** (table ``persisted_operation``) holds the operations a deployment trusts. An operator
registers them with ``whitebill operations register FILE.graphql``. Each operation of a file becomes one
document, with the fragments it uses, printed in graphql-core's standard form. That text and its hash
are what ``whitebill operations list`` prints, and what clients send.

**Registered operations only.** With ``WHITEBILL_OPERATIONS=registered``, only registered operations run,
whether named by hash or sent as their text (in any layout: a text is compared in its printed form, so a
frontend sends its operations as written in its sources; ``make web`` lists the portal's in
``web/dist/portal-operations.graphql``). Anything else gets OPERATION_NOT_REGISTERED, over HTTP
and over websockets alike, and APQ learns nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    Node,
    OperationDefinitionNode,
    parse,
    print_ast,
    validate,
    visit,
)
from graphql.language import Visitor

from billing.core import clock, sql
from billing.core.errors import ErrorCode
from whitebill.compiled.compiler import Compiled, NotCompiled, compile_operation

log = logging.getLogger("whitebill.operations")

ANY = "any"
REGISTERED = "registered"
MODES = (ANY, REGISTERED)
APQ_VERSION = 1
LEARNT_AT_MOST = 1000  # documents APQ keeps per process
RELOAD_EVERY = 5.0  # seconds: an unknown hash reads the registry again at most this often
_HASH = re.compile(r"[0-9a-f]{64}")


def sha256_of(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest()


class OperationRefused(Exception):
    """A request refused before it runs: its HTTP status, code and message."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True, slots=True)
class Operation:
    name: str | None
    document: str
    sha256: str


def split(text: str, schema: GraphQLSchema) -> list[Operation]:
    """Each operation of a GraphQL file as its own document (the operation, then the fragments it uses,
    each once), checked against the schema. Raises ValueError saying what is wrong."""
    try:
        parsed = parse(text)
    except GraphQLError as error:
        raise ValueError(f"the file does not parse: {error.message}") from None
    fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations:
        raise ValueError("the file holds no operation")
    if len(operations) > 1 and any(op.name is None for op in operations):
        raise ValueError("a file of several operations names each of them")
    found = []
    for operation in operations:
        document = DocumentNode(definitions=(operation, *_fragments_used(operation, fragments)))
        problems = validate(schema, document)
        if problems:
            name = operation.name.value if operation.name else "the operation"
            raise ValueError(f"{name} does not validate: {problems[0].message}")
        printed = print_ast(document)
        found.append(Operation(operation.name.value if operation.name else None, printed, sha256_of(printed)))
    return found


def _printed_alone(parsed: DocumentNode, operation: OperationDefinitionNode) -> str:
    """``operation`` of ``parsed`` as :func:`split` keeps it: itself, then the fragments it uses."""
    fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
    return print_ast(DocumentNode(definitions=(operation, *_fragments_used(operation, fragments))))


class _Spreads(Visitor):
    """The names of the fragments a node spreads."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.names.append(node.name.value)


def _fragments_used(root: Node, fragments: dict[str, FragmentDefinitionNode]) -> list[FragmentDefinitionNode]:
    used: dict[str, FragmentDefinitionNode] = {}
    pending = [root]
    while pending:
        spreads = _Spreads()
        visit(pending.pop(), spreads)
        for name in spreads.names:
            if name not in used and name in fragments:
                used[name] = fragments[name]
                pending.append(fragments[name])
    return list(used.values())


async def register(operations: list[Operation]) -> list[tuple[Operation, bool]]:
    """Store each operation (by its hash: registering one again changes nothing); True for the new ones."""
    done = []
    for operation in operations:
        rows = await sql.fetch(
            "INSERT INTO persisted_operation (created_at, sha256, name, document) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (sha256) DO NOTHING RETURNING id",
            clock.now(),
            operation.sha256,
            operation.name,
            operation.document,
        )
        done.append((operation, bool(rows)))
    return done


async def remove(digest: str) -> bool:
    """Forget a registered operation; every process stops running it within RELOAD_EVERY seconds."""
    return bool(await sql.execute("DELETE FROM persisted_operation WHERE sha256 = $1", digest))


async def registered() -> list[Operation]:
    rows = await sql.fetch("SELECT sha256, name, document FROM persisted_operation ORDER BY id")
    return [Operation(row["name"], str(row["document"]), str(row["sha256"])) for row in rows]


class Registry:
    """One process's view of the persisted operations: the registry, read again at most every RELOAD_EVERY
    seconds when a request needs it (so a removed operation stops within that time), one read at a time
    with every request waiting on it; and, outside registered-only mode, what APQ learnt."""

    def __init__(
        self,
        mode: str = ANY,
        schema: GraphQLSchema | None = None,
        rules: Sequence[Any] = (),
        max_tokens: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"WHITEBILL_OPERATIONS is one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.schema = schema  # APQ learns only documents valid against it; registered ones compile against it
        self.rules = tuple(rules)  # the general executor's validation rules besides the specified ones
        self.max_tokens = max_tokens  # and its parser's limit
        self._registered: dict[str, str] = {}
        self._compiled: dict[str, Compiled | str] = {}  # by document: its compiled form, or why there is none
        self._loaded_at: float | None = None
        self._loading = asyncio.Lock()
        self._learnt: OrderedDict[str, str] = OrderedDict()
        self._printed_forms: OrderedDict[str, str | None] = OrderedDict()  # by the sent text's SHA-256
        self._unreadable_until = 0.0

    def _stale(self) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at >= RELOAD_EVERY

    async def _refresh(self) -> None:
        if self._stale():
            async with self._loading:
                if self._stale():  # not read again by another request while this one waited
                    try:
                        loaded = {op.sha256: op.document for op in await registered()}
                    except Exception as error:
                        log.exception("the registry of operations could not be read")
                        raise OperationRefused(
                            503, ErrorCode.UNAVAILABLE, "the registry of operations cannot be read now: retry"
                        ) from error
                    if self.schema is not None:
                        known = self._compiled
                        self._compiled = {d: known.get(d) or self._compile(d) for d in loaded.values()}
                    self._registered, self._loaded_at = loaded, time.monotonic()

    def _printed(self, text: str) -> str | None:
        """A document of one operation, valid as sent, in the form a registered one is kept in; else None.
        Parsed within the general executor's token limit, and validated only once that holds; the last
        LEARNT_AT_MOST answers are remembered by the text's hash."""
        digest = sha256_of(text)
        if digest in self._printed_forms:
            self._printed_forms.move_to_end(digest)
            return self._printed_forms[digest]
        assert self.schema is not None
        printed = None
        try:
            parsed = parse(text, max_tokens=self.max_tokens)
        except GraphQLError:
            parsed = None
        operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)] if parsed else []
        if parsed is not None and len(operations) == 1:
            if not validate(self.schema, parsed):  # every fragment sent, used or not, valid and named once
                printed = _printed_alone(parsed, operations[0])
        self._printed_forms[digest] = printed
        while len(self._printed_forms) > LEARNT_AT_MOST:
            self._printed_forms.popitem(last=False)
        return printed

    def _compile(self, document: str) -> Compiled | str:
        assert self.schema is not None
        return compiled_or_why_not(document, self.schema, self.rules, self.max_tokens)

    async def _trusted(self, digest: str) -> str | None:
        await self._refresh()
        return self._registered.get(digest)

    async def compiled(self, document: str) -> Compiled | None:
        """The compiled form of a registered operation's document, if it has one. A registry that cannot
        be read leaves every request to the general executor, and is tried again RELOAD_EVERY later."""
        if self._unreadable_until > time.monotonic():
            return None
        try:
            await self._refresh()
        except OperationRefused:
            self._unreadable_until = time.monotonic() + RELOAD_EVERY
            return None  # the general executor answers
        found = self._compiled.get(document)
        return found if isinstance(found, Compiled) else None

    def _learn(self, digest: str, document: str) -> None:
        if self.schema is not None:
            try:
                if validate(self.schema, parse(document)):
                    return  # the general executor answers with the problems; nothing is kept
            except GraphQLError:
                return
        self._learnt[digest] = document
        self._learnt.move_to_end(digest)
        while len(self._learnt) > LEARNT_AT_MOST:
            self._learnt.popitem(last=False)

    async def document_for(self, query: object, extensions: object) -> str | None:
        """The document a request runs: its ``query``, or the one its persisted-query hash names. Raises
        OperationRefused for a request that may not run (None: no document, as without APQ)."""
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is None:
            if not isinstance(query, str):
                return None
            if self.mode != REGISTERED:
                return query  # the registry is read only for what it decides
            registered = await self._trusted(sha256_of(query))
            if registered is None and self.schema is not None:
                # The same operation written otherwise (a frontend's own spacing, its fragments first):
                # the registered text, which is the one that runs compiled.
                printed = self._printed(query)
                registered = await self._trusted(sha256_of(printed)) if printed is not None else None
            if registered is None and self.mode == REGISTERED:
                raise _not_registered()
            return registered or query
        digest = _digest_of(persisted)
        if isinstance(query, str):
            if sha256_of(query) != digest:
                raise OperationRefused(
                    400, ErrorCode.PERSISTED_QUERY_HASH_MISMATCH, "the query's SHA-256 is not its sha256Hash"
                )
            if await self._trusted(digest) is None:
                if self.mode == REGISTERED:
                    raise _not_registered()
                self._learn(digest, query)
            return query
        document = await self._trusted(digest)
        if document is None and self.mode == ANY:
            document = self._learnt.get(digest)
            if document is not None:
                self._learnt.move_to_end(digest)
        if document is None:
            if self.mode == REGISTERED:
                raise _not_registered()
            # Apollo's clients look for this code (or the message) to send the query with its hash.
            raise OperationRefused(200, ErrorCode.PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")
        return document


def compiled_or_why_not(
    document: str, schema: GraphQLSchema, rules: Sequence[Any] = (), max_tokens: int | None = None
) -> Compiled | str:
    """A registered document's compiled form, or why it has none. A fault of the compiler itself leaves
    the operation on the general executor, logged: it never stops the registry from loading."""
    try:
        return compile_operation(document, schema, rules, max_tokens)
    except NotCompiled as reason:
        return str(reason)
    except Exception as error:
        log.exception("the compiler failed on a registered operation: the general executor runs it")
        return f"the compiler failed ({type(error).__name__})"


def executor_of(
    operation: Operation, schema: GraphQLSchema, rules: Sequence[Any] = (), max_tokens: int | None = None
) -> str:
    """What runs a registered operation on PostgreSQL: "compiled", or "general: <why not compiled>"."""
    found = compiled_or_why_not(operation.document, schema, rules, max_tokens)
    return "compiled" if isinstance(found, Compiled) else f"general: {found}"


def _digest_of(persisted: object) -> str:
    version = persisted.get("version") if isinstance(persisted, dict) else None
    if type(version) is not int or version != APQ_VERSION:  # True == 1 in Python: not a version
        raise OperationRefused(
            400, ErrorCode.MALFORMED_REQUEST, 'persistedQuery is {"version": 1, "sha256Hash": "<64 hex digits>"}'
        )
    digest = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise OperationRefused(
            400, ErrorCode.MALFORMED_REQUEST, "sha256Hash is the SHA-256 of the document in 64 lower-case hex digits"
        )
    return digest


def _not_registered() -> OperationRefused:
    return OperationRefused(
        400, ErrorCode.OPERATION_NOT_REGISTERED, "this server runs registered operations only, and this is not one"
    )
