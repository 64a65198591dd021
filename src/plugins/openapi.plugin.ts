import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'

// The OpenAPI document is generated from the route schemas, so it cannot drift from what the routes
// validate. JSON at /docs/json, the browsable UI at /docs.
export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Stampede',
          description: 'A flash-sale backend that sells limited stock to a crowd without overselling.',
          version: '0.1.0',
        },
        components: {
          securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
        },
      },
    })
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      uiHooks: {
        // The UI's /docs/static/index.html redirects to its own URL with the query string kept, so any
        // query made a Location header as long as the URL (and a redirect loop): nginx could not pass an
        // answer that large on, and answered 503. The page takes no query; its Location is fixed.
        onRequest: async (request, reply) => {
          if (request.routeOptions.url === '/docs/static/index.html') return reply.redirect('/docs/')
        },
      },
    })
  },
  { name: 'openapi' },
)
