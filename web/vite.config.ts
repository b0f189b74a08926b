// whitebill's browser pages, built into dist/ and served by whitebill itself under /ui/ (nothing is
// fetched from elsewhere at run time): the reference portal (portal/index.html, opened at /portal/) and
// GraphiQL (graphiql/index.html, opened at /graphql in development).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Pages run under a Content-Security-Policy that allows only our own origin: no data: URLs for assets.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      // React libraries mark modules "use client"; a bundle for the browser has nothing to keep it for.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
      input: {
        portal: "portal/index.html",
        graphiql: "graphiql/index.html",
      },
    },
  },
});
