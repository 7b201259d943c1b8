import type { CommandError, InboxEntry, InboxView } from "../bindings";
import { asCommandError, call, commands, formatTime } from "../api";
import { Empty } from "./common";
import type { Route } from "../route";

const LEVEL_LABEL: Record<string, string> = { info: "Info", success: "Done", warning: "Warning", error: "Error" };

/** The notification centre: in-app notifications, newest first, with read state. */
export function NotificationsView({
  inbox,
  pluginName,
  navigate,
  onError,
}: {
  inbox: InboxView | null;
  pluginName: (id: string) => string;
  navigate: (r: Route) => void;
  onError: (e: CommandError | null) => void;
}) {
  const markRead = (id: string | null) => call(commands.markNotificationsRead(id)).catch((e) => onError(asCommandError(e)));
  if (!inbox) return <div className="loading">Loading notifications…</div>;
  if (!inbox.available) {
    return (
      <div className="notifications">
        <h1>Notifications</h1>
        <Empty title="Notifications are off">
          <p>Plugins send notifications through the Notifications plugin, which is not enabled.</p>
          <button className="primary" onClick={() => navigate({ view: "plugins", id: "com.objectos.notification" })} data-open="notification-plugin">
            Open the Notifications plugin
          </button>
        </Empty>
      </div>
    );
  }
  return (
    <div className="notifications">
      <div className="view-head">
        <h1>Notifications</h1>
        <span className="muted" role="status">
          {inbox.unread === 0 ? "All read" : `${inbox.unread} unread`}
        </span>
        <button disabled={inbox.unread === 0} onClick={() => markRead(null)} data-action="mark-all-read">
          Mark all read
        </button>
      </div>
      {inbox.items.length === 0 ? (
        <Empty title="No notifications yet">
          <p>When a plugin notifies you (an invoice paid, a job that failed), it shows up here.</p>
        </Empty>
      ) : (
        <ul className="inbox" aria-label="Notifications">
          {inbox.items.map((n) => (
            <Item key={n.id} n={n} from={pluginName(n.plugin)} onRead={() => markRead(n.id)} />
          ))}
        </ul>
      )}
    </div>
  );
}

function Item({ n, from, onRead }: { n: InboxEntry; from: string; onRead: () => void }) {
  return (
    <li className={`inbox-item level-${n.level}${n.read ? "" : " unread"}`} data-notification={n.id}>
      <span className="inbox-dot" aria-label={n.read ? "read" : "unread"} />
      <div className="inbox-main">
        <div className="inbox-title">
          <span className={`level level-${n.level}`}>{LEVEL_LABEL[n.level] ?? n.level}</span> <strong>{n.title}</strong>
        </div>
        {n.body && <div className="inbox-body">{n.body}</div>}
        <div className="muted inbox-meta">
          {from} · {formatTime(n.createdAt)}
        </div>
      </div>
      {!n.read && (
        <button className="link" onClick={onRead}>
          Mark read
        </button>
      )}
    </li>
  );
}
