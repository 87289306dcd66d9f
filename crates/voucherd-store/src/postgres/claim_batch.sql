-- Decides a batch of claims in one statement, so in one round trip and one
-- snapshot. Claims are decided as if one after another in `ordinal` order;
-- the window functions below compute that sequence at once.
--
-- Parameters: one array per claim field ($1 to $12 and $16, element i is
-- claim i), candidate codes for minting ($13 names the claim each code in
-- $14 is for, in the order to try them), and now ($15). The caller makes
-- the ids, time-ordered, so that each lands at its index's end.
--
-- The answer is either one row per claim (`signal` null) or one row with a
-- signal and nothing written:
--   'wait'      free vouchers the batch needs are locked by another
--               transaction (`waiting_on`); sold out is not known yet.
--   'sequence'  the batch has claims whose answers depend on each other
--               in a way the window functions do not follow (see `verdict`);
--               the caller decides them one at a time.
--   'exhausted' every candidate code of a minting claim is taken.
WITH claim AS (
    SELECT *
    FROM unnest(
        $1::uuid[], $2::uuid[], $3::text[], $4::integer[], $5::text[], $6::timestamptz[],
        $7::timestamptz[], $8::text[], $9::date[], $10::boolean[], $11::integer[], $12::uuid[],
        $16::uuid[]
    ) WITH ORDINALITY AS claim (
        tenant_id, campaign_id, user_id, per_user_limit, state, reserved_until,
        expires_at, limit_group, day, mint, redemptions_max, minted_id, new_reservation_id,
        ordinal
    )
),
-- What each claim's user held of its campaign before the batch: one index
-- probe per claim (a join with a per-pair table would be planned as a
-- nested loop over the batch, quadratic in its size).
with_holding AS (
    SELECT claim.*, holding.held, holding.slots,
           EXISTS (
               SELECT FROM daily_grants AS grant_row
               WHERE grant_row.tenant_id = claim.tenant_id
                 AND grant_row.limit_group = claim.limit_group
                 AND grant_row.user_id = claim.user_id
                 AND grant_row.day = claim.day
           ) AS granted,
           row_number() OVER same_holder AS holder_position
    FROM claim
    CROSS JOIN LATERAL (
        SELECT count(*) AS held,
               coalesce(array_agg(voucher.user_slot) FILTER (WHERE voucher.user_slot IS NOT NULL),
                        '{}'::integer[]) AS slots
        FROM vouchers AS voucher
        WHERE voucher.campaign_id = claim.campaign_id AND voucher.user_id = claim.user_id
    ) AS holding
    WINDOW same_holder AS (PARTITION BY campaign_id, user_id ORDER BY ordinal)
),
-- Which claims take a voucher, assuming every claim that may take one gets
-- one (`verdict` checks the assumption). Without a daily group, the first
-- per_user_limit - held claims of a (campaign, user) may. With one, the
-- first claim of the (tenant, group, user, day) whose user is below their
-- limit may, when no earlier batch granted that day.
eligibility AS (
    SELECT with_holding.*,
           CASE
               WHEN limit_group IS NULL THEN held + holder_position <= per_user_limit
               ELSE held < per_user_limit AND NOT granted
                    AND row_number() OVER (
                        PARTITION BY tenant_id, limit_group, user_id, day,
                                     held < per_user_limit AND NOT granted
                        ORDER BY ordinal
                    ) = 1
           END AS eligible
    FROM with_holding
),
-- A claim that may not take one is refused for the limit it hits first:
-- the user's own limit, counting what the batch gave them before, and
-- then the daily group.
judged AS (
    SELECT eligibility.*,
           CASE
               WHEN eligible THEN 'take'
               WHEN held + count(*) FILTER (WHERE eligible) OVER earlier_of_holder
                    >= per_user_limit THEN 'held'
               ELSE 'daily'
           END AS judgement,
           count(*) FILTER (WHERE eligible) OVER earlier_of_holder AS taken_before
    FROM eligibility
    WINDOW earlier_of_holder AS (
        PARTITION BY campaign_id, user_id ORDER BY ordinal
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    )
),
-- The claims that take, numbered per campaign: the n-th gets the n-th free
-- voucher. Each fills the lowest slot its user has free, in order. Every
-- column a write needs is carried along, so that each write joins one
-- relation with the vouchers table.
wanted AS (
    SELECT judged.*,
           row_number() OVER (PARTITION BY campaign_id ORDER BY ordinal) AS position,
           (
               SELECT slot
               FROM generate_series(1, judged.per_user_limit) AS slot
               WHERE slot <> ALL (judged.slots)
               ORDER BY slot
               OFFSET judged.taken_before
               LIMIT 1
           ) AS user_slot
    FROM judged
    WHERE judgement = 'take'
),
need AS (
    SELECT campaign_id, count(*) AS wanted FROM wanted GROUP BY campaign_id
),
-- The lowest free vouchers nobody else has locked. SKIP LOCKED lets
-- several nodes take from one campaign at once without waiting for each
-- other; each row comes back re-checked as still available and locked by
-- this transaction until it commits.
picked AS MATERIALIZED (
    SELECT need.campaign_id, free.id, free.rank,
           row_number() OVER (PARTITION BY need.campaign_id ORDER BY free.rank) AS position
    FROM need
    CROSS JOIN LATERAL (
        SELECT voucher.id, voucher.rank
        FROM vouchers AS voucher
        WHERE voucher.campaign_id = need.campaign_id AND voucher.state = 'available'
        ORDER BY voucher.rank
        LIMIT need.wanted
        FOR UPDATE SKIP LOCKED
    ) AS free
),
-- The n-th claim that takes gets the n-th picked voucher of its campaign,
-- looked up by subscript (a join on the position would again be planned as
-- a nested loop over the batch).
picked_ids AS MATERIALIZED (
    SELECT campaign_id, array_agg(id ORDER BY position) AS ids
    FROM picked
    GROUP BY campaign_id
),
placed AS (
    SELECT wanted.*, picked_ids.ids[wanted.position::integer] AS voucher_id
    FROM wanted
    LEFT JOIN picked_ids USING (campaign_id)
),
-- The ranks a campaign that mints up to its supply (codes made on claim)
-- has left, as of this statement's snapshot. Another batch may mint from it
-- meanwhile, so the room may be less; never more, since nothing lowers the
-- count. A batch that mints past the room there is refused by the count's
-- check (campaigns_count_within_supply) when minted_ranks adds to the
-- count under its lock, writes nothing, and runs again (the caller). The
-- rows are not locked here: batches minting from one campaign then wait
-- for each other only at minted_ranks, as an unlimited campaign's do.
mint_room AS MATERIALIZED (
    SELECT campaign.id AS campaign_id, campaign.supply - campaign.voucher_count AS room
    FROM campaigns AS campaign
    WHERE campaign.id IN (SELECT campaign_id FROM claim WHERE mint)
      AND campaign.supply IS NOT NULL
),
-- Claims past the free vouchers mint a new rank when the campaign mints
-- and has room, and are sold out otherwise.
mint_ranked AS (
    SELECT placed.*,
           row_number() OVER (PARTITION BY campaign_id ORDER BY ordinal) AS mint_position
    FROM placed
    WHERE voucher_id IS NULL AND mint
),
minting AS (
    SELECT mint_ranked.*
    FROM mint_ranked
    LEFT JOIN mint_room USING (campaign_id)
    WHERE mint_room.room IS NULL OR mint_ranked.mint_position <= mint_room.room
),
sold_out AS (
    SELECT ordinal, tenant_id, campaign_id, user_id, limit_group, day
    FROM placed
    WHERE voucher_id IS NULL AND NOT mint
    UNION ALL
    SELECT ordinal, tenant_id, campaign_id, user_id, limit_group, day
    FROM mint_ranked
    JOIN mint_room USING (campaign_id)
    WHERE mint_ranked.mint_position > mint_room.room
),
-- Free vouchers of a sold-out campaign that another transaction holds: if
-- it rolls back they are free again, so sold out is not yet the answer.
-- Having taken every unlocked one, the rest of what this snapshot sees as
-- free is locked elsewhere.
locked_elsewhere AS (
    SELECT voucher.id
    FROM vouchers AS voucher
    WHERE voucher.campaign_id IN (SELECT campaign_id FROM sold_out)
      AND voucher.state = 'available'
      AND voucher.id NOT IN (SELECT id FROM picked)
),
-- The first candidate code of each minting claim that the tenant does not
-- have yet. The lookup is a LATERAL subquery with a LIMIT, which the
-- planner cannot turn into a join: it runs once a candidate with both the
-- tenant and the code as the index's keys. As a NOT EXISTS, a plan made
-- while the table was small probed by the code alone, the index's second
-- column, and so read the tenant's whole index at each candidate (52 ms of
-- a 56 ms batch of 58 minting claims on a fresh database).
minted_code AS (
    SELECT DISTINCT ON (minting.ordinal) minting.ordinal, candidate.code
    FROM minting
    JOIN unnest($13::bigint[], $14::text[]) WITH ORDINALITY
        AS candidate (ordinal, code, attempt) USING (ordinal)
    LEFT JOIN LATERAL (
        SELECT 1 AS found FROM vouchers AS voucher
        WHERE voucher.tenant_id = minting.tenant_id AND voucher.code = candidate.code
        LIMIT 1
    ) AS taken ON true
    WHERE taken.found IS NULL
    ORDER BY minting.ordinal, candidate.attempt
),
-- Whether the set-based decision above is the sequential one. It is unless
-- a claim that was expected to take a voucher found its campaign sold out
-- while a later claim of the same user counted on it (for the user's limit
-- or the daily group), or the claims of one (campaign, user) disagree on
-- the rules they carry (only a buggy engine sends those).
verdict AS (
    SELECT CASE
               WHEN EXISTS (
                   SELECT FROM sold_out
                   JOIN claim AS later
                       ON later.user_id = sold_out.user_id
                      AND later.tenant_id = sold_out.tenant_id
                      AND later.ordinal > sold_out.ordinal
                      AND (later.campaign_id = sold_out.campaign_id
                           OR (later.limit_group = sold_out.limit_group
                               AND later.day = sold_out.day))
               ) OR EXISTS (
                   SELECT FROM claim
                   GROUP BY campaign_id, user_id
                   HAVING count(DISTINCT (tenant_id, per_user_limit, limit_group, day, mint)) > 1
               ) THEN 'sequence'
               WHEN EXISTS (SELECT FROM locked_elsewhere) THEN 'wait'
               WHEN (SELECT count(*) FROM minting) > (SELECT count(*) FROM minted_code)
                   THEN 'exhausted'
           END AS signal,
           ARRAY(SELECT id FROM locked_elsewhere) AS waiting_on
),
taken AS (
    UPDATE vouchers
    SET state = placed.state,
        user_id = placed.user_id,
        user_slot = placed.user_slot,
        claimed_at = $15,
        reservation_id = CASE WHEN placed.state = 'reserved' THEN placed.new_reservation_id END,
        reserved_until = placed.reserved_until,
        issued_at = CASE WHEN placed.state = 'issued' THEN $15::timestamptz END,
        expires_at = placed.expires_at
    FROM placed
    WHERE vouchers.id = placed.voucher_id
      AND vouchers.state = 'available'
      AND (SELECT signal IS NULL FROM verdict)
    RETURNING placed.ordinal, vouchers.*
),
-- Minting campaigns are locked in id order, so that two batches minting
-- from the same campaigns queue instead of deadlocking.
minting_campaign AS MATERIALIZED (
    SELECT campaign.id
    FROM campaigns AS campaign
    WHERE campaign.id IN (SELECT campaign_id FROM minting)
      AND (SELECT signal IS NULL FROM verdict)
    ORDER BY campaign.id
    FOR NO KEY UPDATE
),
minted_ranks AS (
    UPDATE campaigns
    SET voucher_count = campaigns.voucher_count + counted.minted
    FROM (SELECT campaign_id, count(*) AS minted FROM minting GROUP BY campaign_id) AS counted
    WHERE campaigns.id = counted.campaign_id
      AND campaigns.id IN (SELECT id FROM minting_campaign)
    RETURNING campaigns.id AS campaign_id, campaigns.voucher_count - counted.minted AS rank_base
),
minted AS (
    INSERT INTO vouchers (
        id, campaign_id, tenant_id, rank, code, state, user_id, user_slot, claimed_at,
        reservation_id, reserved_until, issued_at, expires_at, redemptions_max
    )
    SELECT minting.minted_id, minting.campaign_id, minting.tenant_id,
           minted_ranks.rank_base + minting.mint_position, minted_code.code, minting.state,
           minting.user_id, minting.user_slot, $15,
           CASE WHEN minting.state = 'reserved' THEN minting.new_reservation_id END,
           minting.reserved_until,
           CASE WHEN minting.state = 'issued' THEN $15::timestamptz END,
           minting.expires_at, minting.redemptions_max
    FROM minting
    JOIN minted_ranks ON minted_ranks.campaign_id = minting.campaign_id
    JOIN minted_code USING (ordinal)
    RETURNING *
),
claimed AS (
    SELECT taken.* FROM taken
    UNION ALL
    SELECT minting.ordinal, minted.*
    FROM minted
    JOIN minting ON minting.minted_id = minted.id
),
granted_now AS (
    INSERT INTO daily_grants (tenant_id, limit_group, user_id, day, voucher_id)
    SELECT placed.tenant_id, placed.limit_group, placed.user_id, placed.day, claimed.id
    FROM claimed
    JOIN placed USING (ordinal)
    WHERE placed.limit_group IS NOT NULL
),
-- The latest voucher each refused-for-limit claim's user held before the
-- batch; compared below with what the batch gave them before the claim.
held_before AS (
    SELECT DISTINCT ON (voucher.campaign_id, voucher.user_id) NULL::bigint AS ordinal, voucher.*
    FROM vouchers AS voucher
    JOIN (SELECT DISTINCT campaign_id, user_id FROM judged WHERE judgement = 'held') AS pair
        ON voucher.campaign_id = pair.campaign_id AND voucher.user_id = pair.user_id
    ORDER BY voucher.campaign_id, voucher.user_id, voucher.claimed_at DESC, voucher.rank DESC
),
-- For each claim refused for its user's limit, that user's latest voucher
-- at that point of the sequence.
latest_held AS (
    SELECT judged.ordinal, latest.id, latest.campaign_id, latest.tenant_id, latest.rank,
           latest.code, latest.state, latest.user_id, latest.claimed_at, latest.reservation_id,
           latest.reserved_until,
           latest.issued_at, latest.expires_at, latest.locked_until, latest.redemptions,
           latest.redemptions_max
    FROM judged
    CROSS JOIN LATERAL (
        SELECT held_before.* FROM held_before
        WHERE held_before.campaign_id = judged.campaign_id
          AND held_before.user_id = judged.user_id
        UNION ALL
        SELECT claimed.* FROM claimed
        WHERE claimed.campaign_id = judged.campaign_id
          AND claimed.user_id = judged.user_id
          AND claimed.ordinal < judged.ordinal
        ORDER BY claimed_at DESC, rank DESC
        LIMIT 1
    ) AS latest
    WHERE judged.judgement = 'held'
)
-- The answers are disjoint sets of claims, put together without joins. A
-- claim missing from them had a voucher locked for it that the update did
-- not take; the store reports that claim as failed.
SELECT verdict.signal, verdict.waiting_on, NULL::bigint AS ordinal, NULL AS outcome,
       NULL::uuid AS id, NULL::uuid AS campaign_id, NULL::uuid AS tenant_id, NULL::bigint AS rank,
       NULL AS code, NULL AS state, NULL AS user_id, NULL::timestamptz AS claimed_at,
       NULL::uuid AS reservation_id, NULL::timestamptz AS reserved_until, NULL::timestamptz AS issued_at,
       NULL::timestamptz AS expires_at, NULL::timestamptz AS locked_until,
       NULL::integer AS redemptions, NULL::integer AS redemptions_max
FROM verdict
WHERE verdict.signal IS NOT NULL
UNION ALL
SELECT NULL, NULL, ordinal, 'claimed', id, campaign_id, tenant_id, rank, code, state, user_id,
       claimed_at, reservation_id, reserved_until, issued_at, expires_at, locked_until,
       redemptions, redemptions_max
FROM claimed
UNION ALL
SELECT NULL, NULL, ordinal, 'held', id, campaign_id, tenant_id, rank, code, state, user_id,
       claimed_at, reservation_id, reserved_until, issued_at, expires_at, locked_until,
       redemptions, redemptions_max
FROM latest_held
WHERE (SELECT signal IS NULL FROM verdict)
UNION ALL
SELECT NULL, NULL, ordinal, 'daily', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL
FROM judged
WHERE judgement = 'daily' AND (SELECT signal IS NULL FROM verdict)
UNION ALL
SELECT NULL, NULL, ordinal, 'sold_out', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL
FROM sold_out
WHERE (SELECT signal IS NULL FROM verdict)
ORDER BY ordinal
