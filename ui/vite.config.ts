import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "./",
  clearScreen: false,
  server: { port: 1420, strictPort: true },
  build: { target: "es2021", outDir: "dist", emptyOutDir: true },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts"],
    // Layout tests read the stylesheet (`styles.css?raw`); without this it comes back empty.
    css: { include: [/styles\.css/] },
  },
});
