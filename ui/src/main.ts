import "./styles.css";
import { mount } from "./app";
import { tauriBackend } from "./backend";

const root = document.getElementById("app");
if (root) {
  const app = mount(root, tauriBackend());
  app.ready.catch((e: unknown) => {
    console.error("Hookflash could not start", e);
  });
}
