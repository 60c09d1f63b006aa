// Validate GLB files with the Khronos glTF validator; prints one JSON line per file.
// usage: node validate_glb.js FILE...
const fs = require('fs');
const validator = require('gltf-validator');

async function main() {
  const files = process.argv.slice(2);
  for (const file of files) {
    const bytes = new Uint8Array(fs.readFileSync(file));
    const report = await validator.validateBytes(bytes, {uri: file, maxIssues: 100});
    const issues = report.issues;
    console.log(JSON.stringify({
      file: file,
      errors: issues.numErrors,
      warnings: issues.numWarnings,
      messages: issues.messages.filter((m) => m.severity <= 1)
        .map((m) => ({code: m.code, severity: m.severity, pointer: m.pointer, message: m.message})),
    }));
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
