// Read a KML file with @tmcw/togeojson (what most web maps read KML with) and print the GeoJSON it finds.
// node togeojson.js FILE.kml  (NODE_PATH names the node_modules holding @tmcw/togeojson and @xmldom/xmldom)
const fs = require("fs");
const { kml } = require("@tmcw/togeojson");
const { DOMParser } = require("@xmldom/xmldom");

const text = fs.readFileSync(process.argv[2], "utf8");
const doc = new DOMParser().parseFromString(text, "text/xml");
process.stdout.write(JSON.stringify(kml(doc)));
