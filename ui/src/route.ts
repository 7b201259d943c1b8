/** Where the console is: the view, and what it shows. The views import this, not the app. */
export type Route =
  | { view: "plugins"; id?: string; focus?: "permissions" }
  | { view: "records" }
  | { view: "graph" }
  | { view: "logs"; plugin?: string }
  | { view: "audit"; plugin?: string }
  | { view: "notifications" }
  | { view: "settings" };
