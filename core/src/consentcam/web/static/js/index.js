// Home page: only the header's session state is dynamic.
import { initHeader } from "./ui.js";

initHeader().catch(() => {});
