// Spaceport viewer: loads /bundle.sog (PlayCanvas SOG v2) with the PlayCanvas engine and orbits around it.
// The page reports its state on <body data-state="loading|ready|error">, the splat count the engine decoded
// on <body data-splats>, the download on data-progress (percent), the cameras shown on data-cameras, the
// screen direction of north on data-north (degrees clockwise from up), the scale bar's metres (or model
// units) per pixel on data-metres-per-pixel and its unit on data-units; the headless-browser test reads them.
import * as pc from '/vendor/playcanvas.mjs';

const $ = (id) => document.getElementById(id);
const status = (text) => { $('status').textContent = text; };
const fail = (error) => {
    document.body.dataset.state = 'error';
    status(`error: ${error?.message ?? error}`);
    console.error('spaceport viewer:', error);
};
window.addEventListener('error', (e) => fail(e.error ?? e.message));
window.addEventListener('unhandledrejection', (e) => fail(e.reason));

// The longest 1, 2 or 5 x 10^k metres that fits in `maxPixels`.
const niceLength = (metresPerPixel, maxPixels) => {
    const raw = metresPerPixel * maxPixels;
    const power = 10 ** Math.floor(Math.log10(raw));
    return [5, 2, 1].map((m) => m * power).find((m) => m <= raw);
};

const formatBytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} kB`);

// Orbit camera: yaw/pitch in degrees around a target point, distance in scene units.
class Orbit {
    constructor(camera, canvas) {
        this.camera = camera;
        this.target = new pc.Vec3();
        this.yaw = 0;
        this.pitch = -40;
        this.distance = 10;
        this.drag = null;
        canvas.addEventListener('contextmenu', (e) => e.preventDefault());
        canvas.addEventListener('pointerdown', (e) => {
            canvas.setPointerCapture(e.pointerId);
            this.drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey };
        });
        canvas.addEventListener('pointerup', () => { this.drag = null; });
        canvas.addEventListener('pointermove', (e) => {
            if (!this.drag) return;
            const dx = e.clientX - this.drag.x;
            const dy = e.clientY - this.drag.y;
            this.drag.x = e.clientX;
            this.drag.y = e.clientY;
            if (this.drag.pan) {
                const k = this.distance * 0.0015;
                const right = this.camera.right.clone().mulScalar(-dx * k);
                const up = this.camera.up.clone().mulScalar(dy * k);
                this.target.add(right).add(up);
            } else {
                this.yaw -= dx * 0.3;
                this.pitch = Math.max(-89, Math.min(89, this.pitch - dy * 0.3));
            }
        });
        canvas.addEventListener('wheel', (e) => {
            e.preventDefault();
            this.distance *= Math.exp(e.deltaY * 0.001);
        }, { passive: false });
    }

    topDown(center) {
        this.target.copy(center);
        this.yaw = 0;
        this.pitch = -89.9; // straight down; -90 exactly leaves the heading undefined
    }

    frame(center, radius) {
        this.target.copy(center);
        this.distance = Math.max(radius, 1e-3) * 2.6;
        this.yaw = 0;
        this.pitch = -45;
    }

    update() {
        this.camera.setLocalEulerAngles(this.pitch, this.yaw, 0);
        const back = this.camera.forward.clone().mulScalar(-this.distance);
        this.camera.setPosition(this.target.clone().add(back));
    }
}

async function main() {
    const info = await (await fetch('/api/info')).json();
    $('dataset').textContent = info.dataset;
    $('bundle-size').textContent = formatBytes(info.bytes);
    $('psnr').textContent = info.quality ? `${info.quality.psnr_db.toFixed(2)} dB` : 'not measured';
    if (info.quality) $('psnr').title = `${info.quality.views} test views at ${info.quality.resolution}, plain renders`;
    document.body.dataset.bundleBytes = info.bytes;
    document.title = `${info.dataset} · Spaceport viewer`;
    $('version').textContent = info.version;
    document.body.dataset.version = info.version;
    watchForNewer(info.version);

    const canvas = $('canvas');
    const app = new pc.Application(canvas, { graphicsDeviceOptions: { antialias: false } });
    app.setCanvasFillMode(pc.FILLMODE_FILL_WINDOW);
    app.setCanvasResolution(pc.RESOLUTION_AUTO);
    window.addEventListener('resize', () => app.resizeCanvas());

    const camera = new pc.Entity('camera');
    // black, as the quality gates render: holes in the splat show here as they were scored
    camera.addComponent('camera', { clearColor: new pc.Color(0, 0, 0), fov: 50, nearClip: 0.05, farClip: 20000 });
    app.root.addChild(camera);
    const orbit = new Orbit(camera, canvas);
    app.on('update', () => orbit.update());
    app.start();

    status('downloading the bundle…');
    const started = performance.now();
    const asset = new pc.Asset(info.dataset, 'gsplat', { url: '/bundle.sog', filename: `${info.dataset}.sog` });
    asset.on('error', (err) => fail(err));
    asset.on('progress', (received, total) => {
        const percent = Math.floor((100 * received) / (total || info.bytes));
        $('progress').value = percent;
        document.body.dataset.progress = String(percent);
        status(percent < 100 ? `downloading the bundle… ${percent} %` : 'decoding the bundle…');
    });
    asset.ready(() => {
        const resource = asset.resource;
        const splat = new pc.Entity('splat');
        splat.addComponent('gsplat', { asset });
        // the pipeline's splats are in east-north-up metres (z up); PlayCanvas is y up
        splat.setLocalEulerAngles(-90, 0, 0);
        app.root.addChild(splat);

        // frame the opaque bulk of the splat (from the server), else the engine's bounding box
        const toWorld = splat.getWorldTransform();
        let center;
        let radius;
        if (info.frame) {
            center = toWorld.transformPoint(new pc.Vec3(...info.frame.center));
            radius = info.frame.half_extent;
        } else {
            const box = new pc.BoundingBox();
            box.setFromTransformedAabb(resource.aabb, toWorld);
            center = box.center.clone();
            radius = Math.max(box.halfExtents.x, box.halfExtents.y, box.halfExtents.z);
        }
        orbit.frame(center, radius);
        $('reset').addEventListener('click', () => orbit.frame(center, radius));
        $('top-down').addEventListener('click', () => orbit.topDown(center));
        window.addEventListener('keydown', (e) => {
            if (e.key === 'f' || e.key === 'F') orbit.frame(center, radius);
            if (e.key === 't' || e.key === 'T') orbit.topDown(center);
        });
        showCameras(app, splat, info.cameras ?? [], radius);
        // metres only where the survey's SfM georegistered it; otherwise the model's own units
        const units = info.georegistered ? 'm' : 'model units';
        document.body.dataset.units = units;
        if (!info.georegistered) $('scale').title = 'not georegistered: lengths in the model\'s own units, not metres';
        app.on('update', () => drawOverlays(camera, splat, orbit, canvas, units));

        const count = resource.numSplats;
        $('splats').textContent = count.toLocaleString('en-US');
        $('load-time').textContent = `${((performance.now() - started) / 1000).toFixed(2)} s`;
        document.body.dataset.splats = String(count);
        let frames = 0;
        const onFrame = () => {
            frames += 1;
            if (frames >= 10) {
                app.off('frameend', onFrame);
                if (document.body.dataset.state !== 'error') {
                    document.body.dataset.state = 'ready';
                    status(`${info.source} · ${info.engine}`);
                }
            }
        };
        app.on('frameend', onFrame);
    });
    app.assets.add(asset);
    app.assets.load(asset);
}

// Where the photos were taken: small spheres in the splat's frame (east-north-up), test views in orange.
function showCameras(app, splat, cameras, radius) {
    const size = Math.max(radius, 1e-3) * 0.03;
    const material = (r, g, b) => {
        const m = new pc.StandardMaterial();
        m.diffuse = new pc.Color(0, 0, 0);
        m.emissive = new pc.Color(r, g, b);
        m.update();
        return m;
    };
    const train = material(0.3, 0.85, 1.0);
    const heldout = material(1.0, 0.6, 0.1);
    const markers = new pc.Entity('cameras');
    for (const c of cameras) {
        const dot = new pc.Entity(c.name);
        dot.addComponent('render', { type: 'sphere', material: c.heldout ? heldout : train });
        dot.setLocalPosition(...c.position);
        dot.setLocalScale(size, size, size);
        markers.addChild(dot);
    }
    splat.addChild(markers);
    $('camera-count').textContent = String(cameras.length);
    const toggle = $('show-cameras');
    const apply = () => {
        markers.enabled = toggle.checked;
        document.body.dataset.cameras = String(toggle.checked ? cameras.length : 0);
    };
    toggle.disabled = cameras.length === 0;
    toggle.addEventListener('change', apply);
    apply();
}

// The north arrow follows the screen direction of north at the orbit target; the scale bar holds at the
// target's distance, in metres when the survey was georegistered, else in model units.
function drawOverlays(camera, splat, orbit, canvas, units) {
    const north = splat.getWorldTransform().transformVector(new pc.Vec3(0, 1, 0)).normalize();
    const a = camera.camera.worldToScreen(orbit.target);
    const b = camera.camera.worldToScreen(orbit.target.clone().add(north.mulScalar(orbit.distance * 0.1)));
    const degrees = (Math.atan2(b.x - a.x, a.y - b.y) * 180) / Math.PI;
    $('north-arrow').style.transform = `rotate(${degrees.toFixed(1)}deg)`;
    document.body.dataset.north = degrees.toFixed(1);
    const visible = 2 * orbit.distance * Math.tan((camera.camera.fov * Math.PI) / 360);
    const metresPerPixel = visible / canvas.clientHeight;
    const metres = niceLength(metresPerPixel, 140);
    $('scale-bar').style.width = `${(metres / metresPerPixel).toFixed(1)}px`;
    $('scale-label').textContent = `${metres >= 1 ? metres : metres.toPrecision(1)} ${units}`;
    document.body.dataset.metresPerPixel = metresPerPixel.toPrecision(6);
}

// The server follows what is published (viewer/follow.py); the page offers the newer version once it appears.
function watchForNewer(shown, seconds = 5) {
    $('load-newer').addEventListener('click', () => window.location.reload());
    setInterval(async () => {
        try {
            const latest = (await (await fetch('/api/info')).json()).version;
            $('newer').hidden = latest === shown;
            $('newer-version').textContent = latest;
            document.body.dataset.newerVersion = latest === shown ? '' : latest;
        } catch (error) {
            // the server stopped: nothing newer to offer
        }
    }, seconds * 1000);
}

main().catch(fail);
