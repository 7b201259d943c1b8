import { useEffect, useRef } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";

/** A fixed-row-height virtualized list that sticks to the bottom while following. */
export function VirtualList<T>({ items, rowHeight, follow, render, label }: { items: T[]; rowHeight: number; follow: boolean; render: (item: T, index: number) => React.ReactNode; label: string }) {
  const parent = useRef<HTMLDivElement>(null);
  const v = useVirtualizer({ count: items.length, getScrollElement: () => parent.current, estimateSize: () => rowHeight, overscan: 20 });
  useEffect(() => {
    if (follow && items.length > 0) v.scrollToIndex(items.length - 1, { align: "end" });
  }, [follow, items.length, v]);
  return (
    <div ref={parent} className="vlist" role="log" aria-label={label} tabIndex={0}>
      <div style={{ height: v.getTotalSize(), position: "relative" }}>
        {v.getVirtualItems().map((row) => (
          <div key={row.key} className="vrow" style={{ position: "absolute", top: 0, left: 0, right: 0, height: rowHeight, transform: `translateY(${row.start}px)` }}>
            {render(items[row.index], row.index)}
          </div>
        ))}
      </div>
    </div>
  );
}
