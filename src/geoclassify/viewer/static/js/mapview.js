// The web map: MapLibre GL JS (vendored), no basemap (nothing is fetched from the internet), imagery as the
// server's raster tiles and feature layers as its vector tiles, both sent with the session's token.

import * as maplibregl from "../vendor/maplibre-gl.mjs";
import { session } from "./api.js";
import { vectorLayers } from "./style.js";

const BACKGROUND = "#dfe5ea";

function query(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "")).toString();
}

export class MapView {
  constructor(container) {
    this.origin = globalThis.location.origin;
    this.entries = new Map(); // layer key -> {sources, layers, bounds}
    this.map = new maplibregl.Map({
      container,
      style: {
        version: 8,
        sources: {},
        layers: [{ id: "background", type: "background", paint: { "background-color": BACKGROUND } }],
      },
      center: [0, 20],
      zoom: 1.5,
      maxZoom: 23,
      attributionControl: false,
      // The token rides in a header on the server's own tile URLs, and on nothing else.
      transformRequest: (url) =>
        url.startsWith(`${this.origin}/viewer/api/`) && session.token
          ? { url, headers: { Authorization: `Bearer ${session.token}` } }
          : { url },
    });
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
    this.map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
    this.loaded = new Promise((resolve) => this.map.once("load", resolve));
  }

  static key(layer) {
    return layer.layer ? `${layer.src}#${layer.layer}` : layer.src;
  }

  has(key) {
    return this.entries.has(key);
  }

  /** Imagery: the server cuts Web Mercator tiles from the raster in its own CRS. */
  async addRaster(key, details) {
    await this.loaded;
    this.remove(key);
    const info = details.raster;
    const source = `${key}:raster`;
    this.map.addSource(source, {
      type: "raster",
      tiles: [`${this.origin}/viewer/api/tiles/raster/{z}/{x}/{y}.png?${query({ src: details.src })}`],
      tileSize: 256,
      bounds: info.bounds,
      minzoom: info.minzoom,
      maxzoom: info.maxzoom,
    });
    const firstVector = [...this.entries.values()].find((e) => e.vector)?.layers[0];
    this.map.addLayer({ id: `${source}:layer`, type: "raster", source, paint: { "raster-fade-duration": 0 } }, firstVector);
    this.entries.set(key, { sources: [source], layers: [`${source}:layer`], bounds: info.bounds, vector: false });
  }

  /** A feature layer or result from its vector tiles; `color` a fill-color expression (null: outlines). */
  async addVector(key, details, color = null) {
    await this.loaded;
    this.remove(key);
    const info = details.vector;
    const sources = info.levels.map((level) => {
      const id = `${key}:z${level}`;
      const params = query({ src: details.src, layer: details.layer });
      this.map.addSource(id, {
        type: "vector",
        tiles: [`${this.origin}/viewer/api/tiles/vector/${level}/{z}/{x}/{y}.pbf?${params}`],
        minzoom: level,
        maxzoom: level,
        bounds: info.bounds,
        promoteId: { features: "_fid" },
      });
      return id;
    });
    const specs = vectorLayers({ id: key, levels: info.levels, color, geometryTypes: info.geometryTypes });
    for (const spec of specs) this.map.addLayer(spec);
    this.entries.set(key, { sources, layers: specs.map((s) => s.id), bounds: info.bounds, vector: true, details });
  }

  remove(key) {
    const entry = this.entries.get(key);
    if (!entry) return;
    for (const id of entry.layers) if (this.map.getLayer(id)) this.map.removeLayer(id);
    for (const id of entry.sources) if (this.map.getSource(id)) this.map.removeSource(id);
    this.entries.delete(key);
  }

  fit(key) {
    const entry = this.entries.get(key);
    const [w, s, e, n] = entry?.bounds || [];
    if (![w, s, e, n].every(Number.isFinite)) return;
    if (w === e && s === n) this.map.jumpTo({ center: [w, s], zoom: 18 });
    else this.map.fitBounds([[w, s], [e, n]], { padding: 40, animate: false, maxZoom: 21 });
  }

  /** The visible extent in longitude and latitude, rounded to about a centimetre. */
  extent() {
    const b = this.map.getBounds();
    const r = (v) => Math.round(v * 1e7) / 1e7;
    return { xmin: r(b.getWest()), ymin: r(b.getSouth()), xmax: r(b.getEast()), ymax: r(b.getNorth()) };
  }

  /** The topmost drawn feature under `point` among the vector layers, as {key, feature}. */
  featureAt(point) {
    const layers = [...this.entries.values()].filter((e) => e.vector).flatMap((e) => e.layers);
    const present = layers.filter((id) => this.map.getLayer(id));
    if (!present.length) return null;
    const hits = this.map.queryRenderedFeatures(point, { layers: present });
    if (!hits.length) return null;
    const hit = hits[0];
    const key = [...this.entries.entries()].find(([, e]) => e.layers.includes(hit.layer.id))?.[0];
    return { key, feature: hit, details: this.entries.get(key)?.details };
  }

  popup(lngLat, node) {
    this.closePopup();
    this.currentPopup = new maplibregl.Popup({ closeButton: true, maxWidth: "320px", focusAfterOpen: true })
      .setLngLat(lngLat)
      .setDOMContent(node)
      .addTo(this.map);
    return this.currentPopup;
  }

  closePopup() {
    this.currentPopup?.remove();
    this.currentPopup = null;
  }

  /** Resolves when the map has drawn everything it asked for (tiles loaded, no transition running). */
  idle() {
    return new Promise((resolve) => {
      if (this.map.loaded() && this.map.areTilesLoaded()) {
        this.map.once("idle", resolve);
        this.map.triggerRepaint();
      } else this.map.once("idle", resolve);
    });
  }
}
