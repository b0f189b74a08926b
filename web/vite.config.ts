// whitebill's browser pages, built into dist/ and served by whitebill itself under /ui/ (nothing is
// fetched from elsewhere at run time): the reference portal (portal/index.html, opened at /portal/) and
// GraphiQL (graphiql/index.html, opened at /graphql in development).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { defineConfig, type Plugin } from "vite";

// The portal's GraphQL operations, each a whole template literal in its sources, written to
// dist/portal-operations.graphql: what a deployment registers (`whitebill operations register`) to run
// with WHITEBILL_OPERATIONS=registered. An operation assembled at run time would not be listed: the
// build refuses one.
function portalOperations(): Plugin {
  const sources = (folder: string): string[] =>
    readdirSync(folder, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? sources(join(folder, entry.name)) : entry.name.endsWith(".ts") ? [join(folder, entry.name)] : [],
    );
  return {
    name: "portal-operations",
    apply: "build",
    generateBundle() {
      const found = new Set<string>();
      for (const file of sources("portal/src").sort()) {
        for (const match of readFileSync(file, "utf8").matchAll(/`((?:query|mutation|subscription)\b[^`]*)`/g)) {
          if (match[1].includes("${")) this.error(`${file}: an operation assembled at run time cannot be registered`);
          found.add(match[1].trim());
        }
      }
      this.emitFile({ type: "asset", fileName: "portal-operations.graphql", source: [...found].join("\n\n") + "\n" });
    },
  };
}

export default defineConfig({
  base: "/ui/",
  plugins: [portalOperations()],
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
