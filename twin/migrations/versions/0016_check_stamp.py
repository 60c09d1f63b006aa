"""The stamp of a proposal check: the network version and the rule-table version it was checked
against (issue 14: the approval package carries it, and a re-check says what changed).

``proposal`` keeps the stamp of its last check (``network_mark``: the network's change counter,
``twin.db.change_mark``; ``rules_version``: the hash of the clearance and cover tables in effect,
``analysis.rule_catalogue.rules_version``; each table's source and hash are in the stored
report's ``stamp``; both columns are catalogued in ``twin.schema``), and every
check event in ``proposal_event`` (submitted, revised, rechecked) keeps the stamp it was made
at, so the history says which network and which rules each check saw. Rows from before this
migration have none (NULL): their next re-check cannot say whether the network moved.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE proposal ADD COLUMN network_mark text, ADD COLUMN rules_version text;
        ALTER TABLE proposal_event ADD COLUMN network_mark text, ADD COLUMN rules_version text;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE proposal_event DROP COLUMN IF EXISTS network_mark, DROP COLUMN IF EXISTS rules_version;
        ALTER TABLE proposal DROP COLUMN IF EXISTS network_mark, DROP COLUMN IF EXISTS rules_version;
        """
    )
