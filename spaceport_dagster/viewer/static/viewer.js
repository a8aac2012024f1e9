// Spaceport viewer: loads /bundle.sog (PlayCanvas SOG v2) with the PlayCanvas engine and orbits around it.
// The page reports its state on <body data-state="loading|ready|error"> and the splat count the engine
// decoded on <body data-splats>, which the headless-browser test reads.
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
        window.addEventListener('keydown', (e) => { if (e.key === 'f' || e.key === 'F') orbit.frame(center, radius); });

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

main().catch(fail);
