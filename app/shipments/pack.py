"""packOrder: record a packed parcel if, and only if, the scan is exactly what is packed."""

from __future__ import annotations

import logging
from collections import Counter

from app.db import utcnow
from app.orders.models import OrderStatus
from app.security import codes
from app.security.policy import Viewer
from app.shipments.fulfilment import PACK_ORDER, Fulfilment, counts, find_order, move_order
from app.shipments.fulfilment import requested as requested_units
from app.shipments.inputs import LineRequest, clean_line_requests, clean_scan
from app.shipments.models import Pack, PackLine
from app.shipments.results import ItemCount, PackResult, ScanMismatch
from app.shipments.transitions import Progress, Step, check_allowed, order_status_after

log = logging.getLogger("app.shipments")


class Packing:
    def __init__(self, deps: Fulfilment) -> None:
        self._deps = deps

    async def pack_order(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        scanned_skus: list[str],
        lines: list[LineRequest] | None = None,
    ) -> PackResult:
        """Record a packed parcel if, and only if, the scan is exactly the units being packed
        (the named `lines`, or everything still to pick). Otherwise ScanMismatch lists the
        difference and nothing is recorded."""
        deps = self._deps
        entry = await deps.doors.enter(PACK_ORDER, viewer, raw_code, client_ip)
        who = entry.who
        requests = clean_line_requests(lines)
        scanned = clean_scan(scanned_skus)
        async with entry.misses(), deps.units.begin() as uow:
            session = uow.session
            order = await find_order(session, entry.code, lock=True)
            current = OrderStatus(order.status)
            check_allowed(current, Step.PACK)
            found = await counts(session, order)
            wanted = requested_units(
                found.lines,
                requests,
                lambda line: line.to_pick,
                "Every item of this order is packed already.",
            )
            by_id = {line.order_line_id: line for line in found.lines}
            expected: Counter[str] = Counter()
            for line_id, quantity in wanted.items():
                expected[by_id[line_id].sku.upper()] += quantity
            missing = expected - scanned
            unexpected = scanned - expected
            if missing or unexpected:
                raise ScanMismatch(
                    [ItemCount(sku, n) for sku, n in sorted(missing.items())],
                    [ItemCount(sku, n) for sku, n in sorted(unexpected.items())],
                )
            pack = Pack(order_id=order.id or 0, packed_by=who.user_id, packed_at=utcnow())
            session.add(pack)
            await session.flush()
            for line_id, quantity in wanted.items():
                session.add(
                    PackLine(pack_id=pack.id or 0, order_line_id=line_id, quantity=quantity)
                )
            before = found.progress()
            after = Progress(
                ordered=before.ordered,
                packed=before.packed + sum(wanted.values()),
                shipped=before.shipped,
                shipments=before.shipments,
                delivered_shipments=before.delivered_shipments,
            )
            new_status = order_status_after(current, Step.PACK, after)
            await move_order(session, order, new_status)
            await deps.audit.record(
                actor=who,
                action="pack_order",
                outcome="packed",
                order_id=order.id,
                code=order.code,
                reason=", ".join(f"{n} x {by_id[i].sku}" for i, n in wanted.items()),
                client_ip=client_ip,
                session=session,
            )
            if new_status is not current:
                uow.publish(order, "STATUS_CHANGED")
            await uow.commit()
        log.info(
            "order packed",
            extra={"code": codes.mask(order.code), "status": order.status, "user": who.public_id},
        )
        packed = [ItemCount(by_id[i].sku, n) for i, n in wanted.items()]
        return PackResult(order, sorted(packed, key=lambda item: item.sku))
