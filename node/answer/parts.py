"""What answering needs, opened from a node home: configuration, policy, keys, store, the
known legacy codes, and from them the log's sequencer and the answerer. The serving process
(`node.runtime`) and the answer worker (`node.answer.worker`) open the same parts here; each
calls `signers.refresh()` now and then, so that a key switch reaches both."""

from __future__ import annotations

from collections.abc import Callable

from node import metrics, policy, signing
from node.answer.exchange import Interchange
from node.answer.local import LocalAnswerer, encode_answer
from node.clock import SYSTEM, Clock
from node.config import NodeConfig
from node.home import NodeHome
from node.keys import CurrentSigner, NodeKeys
from node.legacy_uscc import load_legacy_codes
from node.log import notes
from node.log.sequencer import Sequencer
from node.store import Store
from node.store.lookup import StoreResultSource


class AnsweringParts:
    def __init__(self, home: NodeHome, clock: Clock = SYSTEM) -> None:
        self.home = home
        self.clock = clock
        self.config: NodeConfig = home.load_config()
        self.document = home.load_document()
        self.policy = policy.policy_from_mapping(self.document, str(home.config_file))
        self.keys = NodeKeys.open(home, self.config)
        self.legacy_codes = load_legacy_codes(home)  # answered despite a wrong check character
        # Follows keys.json: `keys rotate --activate` takes effect here at its moment.
        self.signers = CurrentSigner(self.keys, clock)
        self.log_signer = self.keys.log_signer()
        self.store = Store.open(home.db_url(self.config))

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def signer(self) -> signing.Signer:
        """The key that signs now (DSSE results, notices, change batches)."""
        return self.signers()

    def sign_checkpoint(self, size: int, root: bytes) -> str:
        return notes.sign_checkpoint(
            notes.Checkpoint(self.log_signer.name, size, root), self.log_signer
        )

    def sequencer(
        self,
        *,
        on_checkpoint: Callable[[int, str], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
        commit_on_loop: bool = False,
        commit_delay: float = 0.0,
    ) -> Sequencer:
        """The exchange log's sequencer on this node's store (not started). `on_batch`: told
        each committed batch's size instead of this process's metrics (the answer worker)."""
        return Sequencer(
            self.store.engine,
            self.sign_checkpoint,
            on_checkpoint=on_checkpoint,
            on_batch=on_batch or metrics.LOG_BATCH_SIZE.observe,
            commit_on_loop=commit_on_loop,
            commit_delay=commit_delay,
            clock=self.clock,
        )

    def local_answerer(self, sequencer: Sequencer, *, count: bool = True) -> LocalAnswerer:
        """Answering in this process, on `sequencer`'s log."""
        interchange = Interchange(
            node_id=self.node_id,
            policy=self.policy,
            results=StoreResultSource(),
            signer=lambda: self.signer,
            sequencer=sequencer,
            subject_key=self.keys.subject_hmac_key(),
            encode=encode_answer,
            clock=self.clock,
            legacy_codes=self.legacy_codes,
        )
        return LocalAnswerer(interchange, sequencer, count=count)
